"""cronpolicy: a policy gate for cron scripts.

    from cronpolicy import CronScript

    class PublishDistro(CronScript):
        name = "publish-distro"
        expected_runtime = 20 * 60

        def main(self):
            ...

    if __name__ == "__main__":
        PublishDistro().run()

See README.txt, ``cronpolicy.script`` (the base class) and ``cronpolicy.policy``
(the decision rules).
"""

from cronpolicy.errors import CronPolicyError, Interrupted

#: The release, in one place: the package metadata (pyproject.toml reads it),
#: ``cronpolicy --version`` and CHANGELOG.txt's newest entry (a test checks
#: they agree).  How it is bumped: CHANGELOG.txt.
__version__ = "0.2.0"

__all__ = ["CronScript", "CronPolicyError", "Interrupted", "__version__"]


def __getattr__(name):
    # CronScript is loaded when asked for: the `cronpolicy` command imports
    # this package for its modules, and its read commands answer in less
    # time than loading the gate, the watcher and the interruption takes.
    if name == "CronScript":
        from cronpolicy.script import CronScript
        return CronScript
    raise AttributeError("module 'cronpolicy' has no attribute %r" % name)
