"""`cronpolicy simulate`: days of a fleet under each rollout strategy.

The play of one strategy is cronpolicy.tooling.simulation (pure); the
picture, simulation_picture.

Modules (a test keeps this list complete):

    command       the command: its options checked, the play asked for, the report
    inputs        the fleet: from a fleet file, crontab files or the policy database
    play          the plays of each seed and strategy, in a pool of processes
    report        the figures' table, the quoted lines, the JSON, the picture
"""
