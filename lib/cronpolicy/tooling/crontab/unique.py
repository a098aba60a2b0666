"""Names unique on a host, that stay the same when lines move.

Locks, policies, estimates and history all key on the name, so two
unrelated jobs must never share one, and a name must not depend on where
a line stands (reordering a file and wrapping again must not move a policy
to another job).  ``choose_names`` therefore looks only at what the jobs
are, never at their order:

1. a name given in a ``# cronpolicy: name=...`` comment is used as given,
   then the name an already wrapped line carries is kept;
2. the same command (for the same user) on several lines is one job on
   several schedules: it gets one name, so it has one lock and estimate;
3. a program that no other job runs is named after it (certbot);
4. jobs that run the same program get its name plus the first of their
   words the others do not all share: arguments (those that are not
   options first), then the user field, then leading VAR=value words
   (process-job-source-IRosettaUploadJobSource, run-parts-cron.daily).
   One of them that has no such word keeps the plain name; when the first
   word does not tell them apart, the first two do, then three;
5. what is still alike gets a short hash of its user and command.
"""

import collections
import hashlib

from cronpolicy.tooling.crontab.names import base_name, clean

#: A job to name: ``key`` identifies it to the caller; ``identity`` is
#: names.Identity; ``user`` the system crontab's user field or None;
#: ``explicit`` and ``kept`` a name it already has (comment, wrapped line).
Candidate = collections.namedtuple("Candidate", "key identity user command explicit kept")

#: How a name was chosen, as `crontab names` shows it.
EXPLICIT, KEPT, DERIVED = "comment", "wrapped", "program"

_WORD_LENGTH = 40
_NAME_LENGTH = 120
_MAX_WORDS = 3


def choose_names(candidates):
    """{key: (name, how)} for every candidate."""
    chosen = {}
    for candidate in candidates:
        if candidate.explicit:
            chosen[candidate.key] = (candidate.explicit, EXPLICIT)
        elif candidate.kept:
            chosen[candidate.key] = (candidate.kept, KEPT)
    taken = {name for name, _ in chosen.values()}
    jobs = collections.defaultdict(list)      # one job, perhaps on several lines
    for candidate in candidates:
        if candidate.key not in chosen:
            jobs[(candidate.user, " ".join(candidate.command.split()))].append(candidate)
    groups = collections.defaultdict(list)
    for same_job in jobs.values():
        groups[same_job[0].identity.name].append(same_job)
    reserved = taken | set(groups)
    for base in sorted(groups):
        names = _group_names(base, groups[base], taken, reserved)
        for same_job, name in names.items():
            taken.add(name)
            for candidate in jobs[same_job]:
                chosen[candidate.key] = (name, DERIVED)
    return chosen


def _label(word):
    """A word of a command as part of a name: a path's base name, the
    characters a name should not hold made '-'."""
    text = base_name(word) if "/" in word else clean(word)
    return text[:_WORD_LENGTH].strip("-.")


def _labels(words):
    labels = []
    for word in words:
        label = _label(word)
        if label and label not in labels:
            labels.append(label)
    return labels


def _telling_words(same_jobs):
    """{job key: (its argument labels, then its user and assignment labels),
    less those every job of the group shares}."""
    words = {}
    for same_job in same_jobs:
        first = same_job[0]
        arguments = first.identity.arguments
        words[(first.user, " ".join(first.command.split()))] = (
            _labels([w for w in arguments if not w.startswith("-")]
                    + [w for w in arguments if w.startswith("-")]),
            _labels(([first.user] if first.user else []) + list(first.identity.assignments)))
    if len(words) > 1:
        for part in (0, 1):
            common = set.intersection(*(set(labels[part]) for labels in words.values()))
            for key, labels in words.items():
                words[key] = tuple(
                    [label for label in labels[index] if label not in common]
                    if index == part else labels[index] for index in (0, 1))
    return words


def _group_names(base, same_jobs, taken, reserved):
    """{job key: name} for the jobs whose program is ``base``."""
    telling = _telling_words(same_jobs)
    names = {}
    # The one job that has no argument of its own keeps the program's name.
    plain = [key for key, (arguments, _) in telling.items() if not arguments]
    if base not in taken and (len(telling) == 1 or len(plain) == 1):
        names[plain[0] if plain else next(iter(telling))] = base
    words = {key: arguments + [label for label in others if label not in arguments]
             for key, (arguments, others) in telling.items()}
    pending = [key for key in words if key not in names]
    for count in range(1, _MAX_WORDS + 1):
        proposals = {key: _join(base, words[key][:count]) for key in pending
                     if len(words[key]) >= count}
        clashes = collections.Counter(proposals.values())
        for key, name in proposals.items():
            if clashes[name] == 1 and name not in reserved and name not in names.values():
                names[key] = name
        pending = [key for key in pending if key not in names]
    for key in sorted(pending, key=repr):
        names[key] = _hashed(base, key, reserved | set(names.values()))
    return names


def _join(base, labels):
    return ("-".join([base] + labels))[:_NAME_LENGTH].strip("-.")


def _hashed(base, key, unavailable):
    user, command = key
    digest = hashlib.sha1(("%s\0%s" % (user or "", command)).encode(
        "utf-8", "surrogateescape")).hexdigest()
    for length in range(8, len(digest) + 1):
        name = "%s-%s" % (base[:_NAME_LENGTH - length - 1], digest[:length])
        if name not in unavailable:
            return name
    raise AssertionError("no free name for %r" % (key,))
