"""The Flask application of `cronpolicy serve`: routes, safety, and errors.

Only GET (and HEAD) are routed: the dashboard changes nothing.  Every
answer carries a strict Content-Security-Policy (scripts, styles and
images from this server only: no inline script, no inline style, nothing
from the internet), and Jinja2 escapes every value it puts in a page
(script names, hosts and reasons are user text).  Without a token only
requests naming a loopback host are answered (a page elsewhere cannot
reach the dashboard through DNS rebinding); with one, every request
must carry it (``Authorization: Bearer T``, or the cookie that a visit
to ``/?token=T`` sets).
"""

import hmac
import json
import logging
import os

from cronpolicy.errors import CronPolicyError, UsageError
from cronpolicy.timeutil import format_duration, format_time

#: The headers of every answer.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-store",
}
TOKEN_COOKIE = "cronpolicy_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

log = logging.getLogger("cronpolicy.serve")


def _jsonable(value):
    from cronpolicy.tooling.output import _jsonable as jsonable
    return jsonable(value)


def _host_name(header):
    """The host part of a Host header ("[::1]:8080" is ::1)."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def _is_loopback_name(name):
    import ipaddress
    if name.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def create_app(settings, token=None, refresh=5.0, schedules_every=30.0):
    """The application reading through ``settings``; ``token``: what every
    request must carry (None: loopback only); ``refresh``: how often the
    page looks again, in seconds (0: never); ``schedules_every``: how often
    the fleet's schedules are read again (they are read once here)."""
    from flask import Flask, Response, redirect, render_template, request
    from cronpolicy.tooling.web import draw, views

    here = os.path.dirname(os.path.abspath(__file__))
    app = Flask("cronpolicy.tooling.web", root_path=here, static_folder="static",
                template_folder="templates")
    app.config.update(MAX_CONTENT_LENGTH=1024, JSON_SORT_KEYS=True)
    from cronpolicy.tooling.output import change_summary, heard, quote, release_name
    app.jinja_env.filters.update(time=format_time, duration=format_duration, heard=heard,
                                 release=release_name, change=change_summary, quote=quote,
                                 hm=lambda moment: moment.strftime("%H:%M") if moment else "-")
    app.jinja_env.globals.update(refresh=refresh)
    token_bytes = token.encode() if token else None
    schedules = views.Schedules(settings, schedules_every)
    schedules.refresh()
    schedules.keep()

    @app.before_request
    def guard():
        if token_bytes is None:
            if not _is_loopback_name(_host_name(request.host or "")):
                return _plain(421, "this dashboard answers only to a loopback host name "
                                   "(start it with --token to serve others)")
            return None
        given = request.args.get("token")
        if given is not None and request.path == "/":
            if not hmac.compare_digest(given.encode(), token_bytes):
                return _plain(401, "wrong token")
            answer = redirect("/", code=303)
            answer.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict")
            return answer
        header = request.headers.get("Authorization", "")
        offered = (header[7:] if header.startswith("Bearer ") else
                   request.cookies.get(TOKEN_COOKIE, ""))
        if not hmac.compare_digest(offered.encode(), token_bytes):
            answer = _plain(401, "a token is needed: Authorization: Bearer TOKEN, or visit "
                                 "/?token=TOKEN once")
            answer.headers["WWW-Authenticate"] = "Bearer"
            return answer
        return None

    @app.after_request
    def headers(answer):
        answer.headers.update(SECURITY_HEADERS)
        return answer

    def _plain(status, text):
        return Response(text + "\n", status=status, mimetype="text/plain")

    def _json(data, status=200):
        # <, > and & as \u escapes: the same JSON, and no markup even for a
        # reader that ignores the content type.
        text = json.dumps(data, default=_jsonable, sort_keys=True)
        for char in "<>&":
            text = text.replace(char, "\\u%04x" % ord(char))
        return Response(text, status=status, mimetype="application/json")

    @app.errorhandler(CronPolicyError)
    def refused(error):
        status = 400 if isinstance(error, UsageError) else 503
        message = str(error).replace("\n", " ")
        if status == 503:
            log.warning("cronpolicy serve: %s", message)
        if request.path.startswith("/api/"):
            return _json({"error": message}, status)
        return render_template("error.html", status=status, message=message), status

    @app.errorhandler(Exception)
    def failed(error):
        from werkzeug.exceptions import HTTPException
        if isinstance(error, HTTPException):
            return error
        log.error("cronpolicy serve: %s on %s: %s", type(error).__name__, request.path, error)
        return _plain(500, "internal error (the server's log says which)")

    @app.get("/")
    def index():
        data = views.overview(settings, views.Query(request.args), schedules)
        return render_template("index.html", data=data, picture=draw.timeline(data), live=True,
                               query=data["query"])

    @app.get("/slots")
    def slots_page():
        data = views.slots(settings, request.args) if request.args.get("duration") else None
        return render_template("slots.html", data=data, args=request.args,
                               pictures=[draw.slot(data, candidate)
                                         for candidate in data["candidates"]] if data else [])

    @app.get("/script")
    def script_page():
        data = views.script(settings, request.args.get("name", ""))
        return render_template("script.html", data=data)

    @app.get("/rollouts")
    def rollouts_page():
        return render_template("rollouts.html",
                               data=views.rollout_history(settings, _limit(request.args)))

    @app.get("/api/overview")
    def api_overview():
        return _json(views.overview(settings, views.Query(request.args), schedules))

    @app.get("/api/live")
    def api_live():
        return _json(views.live(settings, views.Query(request.args).host))

    @app.get("/api/rollouts")
    def api_rollouts():
        return _json(views.rollout_history(settings, _limit(request.args)))

    @app.get("/api/slots")
    def api_slots():
        return _json(views.slots(settings, request.args))

    @app.get("/api/script")
    def api_script():
        return _json(views.script(settings, request.args.get("name", "")))

    @app.get("/favicon.ico")
    def favicon():
        return app.send_static_file("favicon.svg")

    return app


def _limit(args):
    from cronpolicy.tooling.web.views import _count
    return _count(args.get("limit"), 20, 500, "limit")
