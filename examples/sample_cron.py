#!/usr/bin/env python3
"""A sample cron job behind the cronpolicy gate.

Run it as cron would:  python examples/sample_cron.py -v
It counts to --steps with a short pause, so there is a run to record.  Each
step is half "publishing" (not safe to interrupt) and half waiting (safe):
a rollout stops it only while it waits.
"""

import time

from cronpolicy import CronScript


class SampleCron(CronScript):
    """Count to --steps, slowly: a stand-in for a real job."""

    name = "sample-cron"
    expected_runtime = 5  # seconds, until there is history
    in_step = False       # what is_safe_to_interrupt() reads (asked only while main() runs)

    def add_my_options(self):
        self.parser.add_argument("--steps", type=int, default=3)
        self.parser.add_argument("--pause", type=float, default=0.1,
                                 help="seconds between steps")

    def main(self):
        for step in range(1, self.options.steps + 1):
            self.in_step = True           # pretend to publish: must not be cut short
            time.sleep(self.options.pause / 2)
            self.in_step = False
            self.logger.info("step %d of %d done", step, self.options.steps)
            time.sleep(self.options.pause / 2)   # waiting for the next batch: safe

    def is_safe_to_interrupt(self):
        return not self.in_step


if __name__ == "__main__":
    SampleCron().run()
