"""The only place SQL lives: tables, queries per table, and the unit of work.

Functions here take an open connection and never commit; `Database.transaction`
is the one owner of commit and rollback.
"""
