-- Placeholder: patch number 0017 belongs to a branch developed alongside
-- this one (issue 30 was given 0018).  When merging, delete this file and
-- keep that branch's 0017; if that branch is not merged, renumber 0018 to
-- 0017 and delete this file.  It changes nothing.
SELECT 1;
