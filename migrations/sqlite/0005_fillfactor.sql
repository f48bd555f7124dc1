-- PostgreSQL's version 5 sets fillfactors; SQLite has no such setting. This version exists so
-- both backends carry the same migrations.
SELECT 1;
