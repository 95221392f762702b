"""Schema migrations of the catalog, one module per version and backend, frozen.

``migrations/<backend>/vNNN_<what>.py`` holds the step that takes that backend's schema from
version NNN - 1 to NNN (its SQL text, or the code that rewrites rows), and the backend's package
lists them in order. Catalogs written by every earlier lookalike are upgraded by running the
steps they lack, and a new catalog is built by running them all, so the text of a step that has
been released is frozen: it is never edited, not even its whitespace (SQLite keeps the CREATE
statements' text in ``sqlite_master``). A change to the schema is a new module with the next
version number, added at the end of the list; ``tests/test_store.py`` checks the schema each
step gives against the one recorded when it was released.
"""
