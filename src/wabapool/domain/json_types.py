"""JSON whose shape no code here fixes: one name for it, so each `Any` left in the code says why.

A request body's free-form part, an event's payload, a document read back
from the wire: `json.loads` returns `Any`, and the code reads such data by key
after checking it. Everything with a known shape has a real type instead (a
dataclass, a TypedDict, a pydantic model).
"""

from typing import Any, TypeAlias

JSONValue: TypeAlias = Any  # a str, number, bool, None, list or object, nested freely
JSONObject: TypeAlias = dict[str, JSONValue]
