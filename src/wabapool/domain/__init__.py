"""Pure billing rules on plain data: no database, no HTTP, no clock.

Every function here takes what it needs as arguments and returns new values
(and the events a change raises) so the money rules can be read and tested on
their own.
"""
