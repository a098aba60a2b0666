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
from cronpolicy.script import CronScript

__all__ = ["CronScript", "CronPolicyError", "Interrupted"]
