"""Moving crontabs behind cronpolicy, once: `cronpolicy crontab wrap`,
`unwrap` and `names`.

wrap rewrites every job line so that its command runs through `cronpolicy
run NAME`, keeping schedules, environment lines, comments and blank lines
exactly as they were; unwrap restores the original byte for byte; wrapping
a wrapped crontab changes nothing.

Modules:

    lines     the line grammar cron reads, and one line wrapped or unwrapped
    shell     just enough of the shell's grammar to read a command's words
    names     the program a command really runs, past guards and wrappers
    unique    names unique across a host that do not move when lines move
    host      several crontabs at once: formats, and wrap or names over all
    files     reading crontab files and writing several at once, all or none
    commands  the crontab commands
"""

from cronpolicy.tooling.crontab.host import (  # noqa: F401
    Crontab, detect_system, name_files, wrap, wrap_files, wrap_report)
from cronpolicy.tooling.crontab.lines import (  # noqa: F401
    MAX_COMMAND_BYTES, parse_job, read_crontab, unwrap, write_crontab)
from cronpolicy.tooling.crontab.names import identify, job_name  # noqa: F401
