"""Trigram indexes for the All keys search, on PostgreSQL only (a no-op on SQLite).

The search is `icontains` on a key's name and identifier (ApiKeyQuerySet.matching), which
Django writes as UPPER(column::text) LIKE UPPER('%q%'): a B-tree cannot serve a pattern with a
leading %, so without these every search reads every key. A pg_trgm GIN index on the same
UPPER(...) expression serves it. SQLite has no trigram index and scans; the indexes stay out
of the models' state, so nothing ever asks SQLite to build them.

pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it.
"""

from django.db import migrations

# The expression is the one Django's icontains compares (UPPER(col::text)), or the planner
# cannot use the index.
CREATE = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX key_name_trgm ON keys_apikey USING gin (UPPER(name::text) gin_trgm_ops)",
    "CREATE INDEX key_identifier_trgm ON keys_apikey "
    "USING gin (UPPER(identifier::text) gin_trgm_ops)",
    # The history's key filter asks for a name in any case (iexact: UPPER(name::text) = …);
    # a trigram index answers equality only slowly, a B-tree at once.
    "CREATE INDEX key_name_upper ON keys_apikey (UPPER(name::text))",
    # Statistics of the indexed expressions, at once: without them the planner guesses that
    # any search matches 1 % of the keys and walks the newest-first index through every key
    # to fill a page that a rare search never fills (40 ms at 100,000 keys, not 0.3 ms).
    "ANALYZE keys_apikey",
]
# The extension stays: something else may use it, and unused it costs nothing.
DROP = ["DROP INDEX key_name_trgm", "DROP INDEX key_identifier_trgm", "DROP INDEX key_name_upper"]


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in CREATE:
            schema_editor.execute(sql)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in DROP:
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [
        ("keys", "0015_chainverification"),
    ]

    operations = [migrations.RunPython(create, drop)]
