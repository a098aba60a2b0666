"""Names unique on a host, that stay the same when lines move.

Locks, policies, estimates and history all key on the name, so two
unrelated jobs must never share one, and a name must not depend on where
a line stands (reordering a file and wrapping again must not move a policy
to another job).  ``choose_names`` therefore looks only at what the jobs
are, never at their order:

1. the same command (for the same user) on several lines is one job on
   several schedules: it has one name, so one lock and one estimate;
2. a name given in a ``# cronpolicy: name=...`` comment is used as given,
   then the name an already wrapped line carries is kept (for every line
   of that job);
3. a program that no other job runs is named after it (certbot);
4. jobs that run the same program get its name plus the first of their
   words the others do not all share: arguments (those that are not
   options first), then the directory a ``cd`` went to, the user field,
   leading VAR=value words (process-job-source-IRosettaUploadJobSource,
   run-parts-cron.daily).  The one of them with no argument of its own
   (failing that, with no word of its own at all) keeps the plain name;
   when the first word does not tell them apart, the first two do, then
   three;
5. what is still alike gets a short hash of its user and command.

No derived name is one another job has or was given.
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
#: Derived names stay well inside the name rule's 255 characters.
NAME_LENGTH = 120
_MAX_WORDS = 3


def _job_key(candidate):
    return candidate.user, candidate.command.strip(" \t\r")


def choose_names(candidates):
    """{key: (name, how)} for every candidate."""
    jobs = collections.defaultdict(list)      # one job, perhaps on several lines
    for candidate in candidates:
        jobs[_job_key(candidate)].append(candidate)
    chosen, taken, unnamed = {}, set(), {}
    for key, lines in jobs.items():
        given = sorted({c.explicit for c in lines if c.explicit})
        kept = sorted({c.kept for c in lines if c.kept})
        for candidate in lines:
            if candidate.explicit:
                chosen[candidate.key] = (candidate.explicit, EXPLICIT)
            elif given:
                chosen[candidate.key] = (given[0], EXPLICIT)
            elif candidate.kept:
                chosen[candidate.key] = (candidate.kept, KEPT)
            elif kept:
                chosen[candidate.key] = (kept[0], KEPT)
        taken.update(given + kept)
        if not given and not kept:
            unnamed[key] = lines
    groups = collections.defaultdict(list)
    for key, lines in unnamed.items():
        groups[lines[0].identity.name[:NAME_LENGTH]].append(key)
    reserved = taken | set(groups)
    for base in sorted(groups):
        names = _group_names(base, [unnamed[key][0] for key in groups[base]], taken, reserved)
        for key, name in names.items():
            taken.add(name)
            for candidate in unnamed[key]:
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


def _telling_words(jobs):
    """{job key: (its argument labels, then its other labels: directory,
    user, assignments), less those every job of the group shares}."""
    words = {}
    for job in jobs:
        identity = job.identity
        arguments = identity.arguments
        words[_job_key(job)] = (
            _labels([w for w in arguments if not w.startswith("-")]
                    + [w for w in arguments if w.startswith("-")]),
            _labels(([identity.directory] if identity.directory else [])
                    + ([job.user] if job.user else []) + list(identity.assignments)))
    if len(words) > 1:
        for part in (0, 1):
            common = set.intersection(*(set(labels[part]) for labels in words.values()))
            for key, labels in words.items():
                words[key] = tuple(
                    [label for label in labels[index] if label not in common]
                    if index == part else labels[index] for index in (0, 1))
    return words


def _plain(telling):
    """The job of the group that keeps the program's plain name, or None."""
    if len(telling) == 1:
        return next(iter(telling))
    for level in (0, 1):
        bare = [key for key, labels in telling.items()
                if not labels[0] and (level == 0 or not labels[1])]
        if len(bare) == 1:
            return bare[0]
        if not bare:
            return None
    return None


def _group_names(base, jobs, taken, reserved):
    """{job key: name} for the jobs whose program is ``base``."""
    telling = _telling_words(jobs)
    names = {}
    plain = _plain(telling)
    if plain is not None and base not in taken:
        names[plain] = base
    words = {key: arguments + [label for label in others if label not in arguments]
             for key, (arguments, others) in telling.items()}
    pending = [key for key in words if key not in names]
    for count in range(1, _MAX_WORDS + 1):
        proposals = {key: _join(base, words[key][:count]) for key in pending
                     if len(words[key]) >= count}
        clashes = collections.Counter(proposals.values())
        for key, name in proposals.items():
            if clashes[name] == 1 and name not in reserved and name not in taken \
                    and name not in names.values():
                names[key] = name
        pending = [key for key in pending if key not in names]
    for key in sorted(pending, key=repr):
        names[key] = _hashed(base, key, reserved | taken | set(names.values()))
    return names


def _join(base, labels):
    return ("-".join([base] + labels))[:NAME_LENGTH].strip("-.")


def _hashed(base, key, unavailable):
    user, command = key
    digest = hashlib.sha1(("%s\0%s" % (user or "", command)).encode(
        "utf-8", "surrogateescape")).hexdigest()
    for length in range(8, len(digest) + 1):
        name = "%s-%s" % (base[:NAME_LENGTH - length - 1], digest[:length])
        if name not in unavailable:
            return name
    raise AssertionError("no free name for %r" % (key,))


def shared_names(chosen, candidates):
    """[(name, [keys])] of names that more than one job carries (comments or
    wrapped lines that say so): such jobs share a lock, policy and history."""
    jobs_of = collections.defaultdict(set)
    keys_of = collections.defaultdict(list)
    for candidate in candidates:
        name = chosen[candidate.key][0]
        jobs_of[name].add(_job_key(candidate))
        keys_of[name].append(candidate.key)
    return [(name, keys_of[name]) for name in sorted(jobs_of) if len(jobs_of[name]) > 1]
