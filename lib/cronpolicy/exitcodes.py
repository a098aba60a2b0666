"""Exit codes of cron scripts built on CronScript and of the `cronpolicy` CLI.

They are part of the interface (docs/script-authors.txt documents them): crontab lines,
monitoring checks and rollout tooling act on them.
"""

#: The script ran and main() succeeded; or policy skipped it (cron mails
#: nobody); or a CLI command did what it was asked.
OK = 0

#: main() raised (or exited non-zero); the run is recorded as failed.
#: (`cronpolicy catch-up`: a ticket's command could not be started.)
FAILED = 1

#: Bad usage or bad input: unknown option, unparsable time, unknown id.
USAGE = 2

#: Another instance of the script holds the per-host lock; recorded as skipped.
LOCKED = 3

#: cronpolicy itself could not decide or record: database unreachable, schema
#: missing or too old, configuration broken, the database refusing the
#: run's start record (a privilege, a database that only reads, or its
#: data).  main() was not called.
GATE_ERROR = 4

#: `cronpolicy check` and `--dry-run`: the script would be skipped.
WOULD_SKIP = 5

#: main() was stopped at a safe point (rollout, disabled policy, SIGTERM);
#: recorded as interrupted with the reason.  (Also a run begun while its
#: start could not be written, once the database refused that start for its
#: data: not recorded, its record kept in spool/rejected/.)
INTERRUPTED = 6

#: `cronpolicy deploy wait`: the timeout passed with runs still blocking, or
#: the rollout it waited for was ended (or deleted) before quiet; `deploy run`: the same,
#: its command not run.
WAIT_TIMEOUT = 7

#: `cronpolicy overdue`: at least one script has not succeeded in time.
OVERDUE = 8

#: `cronpolicy crontab wrap`: some jobs were left as they were (wrapped,
#: they would pass cron's command length limit); the rest is wrapped.
NOT_ALL_WRAPPED = 9

#: A CLI command (or --dry-run, --help) could not write its standard output
#: (a disk full, the descriptor closed, an I/O error) though it ran to its end: what it changed
#: is changed, and one line on standard error says so, with what it could not
#: write.  A command that had another code to give (5, 7, 8, a command's own)
#: gives that one, and the line too.
OUTPUT_FAILED = 10

#: A CLI command stopped by Ctrl-C (SIGINT), or `simulate` by SIGTERM: the
#: shell's 128 + SIGINT.
STOPPED = 130

#: A CLI command (or --dry-run, --help) whose standard output is a pipe its
#: reader has left
#: (`cronpolicy history | head`): the shell's 128 + SIGPIPE, as for a command
#: SIGPIPE killed; nothing said.  The command ran to its end, what it changed
#: is changed; one that had another code to give (5, 7, 8) gives that one.
READER_GONE = 141
