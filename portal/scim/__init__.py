"""SCIM 2.0 provisioning (RFC 7643, RFC 7644): identity providers create, update and deactivate
portal users at /scim/v2/ (docs/design.md §10).

protocol.py reads and writes SCIM documents (no database); provisioning.py changes users and
records each change in the signed history; views.py is the door (bearer token, throttle,
errors); discovery.py the documents that describe what is supported.
"""
