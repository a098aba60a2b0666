"""`cronpolicy serve`: a read-only web dashboard of the fleet.

An optional extra (``pip install 'cronpolicy[web]'``: Flask and waitress),
never imported by a cron job nor by the other commands.  ``views`` reads
(plain dicts, the JSON views), ``draw`` makes the pictures' geometry,
``app`` is the Flask application (routes, safety headers, the token),
``serve`` the command; templates/ and static/ are everything it serves.

Modules:

    views   the JSON views (plain dicts)
    draw    the pictures' geometry
    app     the Flask application: routes, safety headers, the token
    serve   the command
"""
