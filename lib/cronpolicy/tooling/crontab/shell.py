"""Just enough of the POSIX shell grammar to find the program a crontab
command runs: words (quotes removed, expansions kept as written), control
operators, and redirections set apart so that ``2>&1`` and ``>/dev/null``
are never mistaken for arguments.

Nothing here runs or expands anything: the text is only read.  Unbalanced
quotes or parentheses end the text quietly (cron would hand the shell a
syntax error; the name only has to be sensible).
"""

import collections

#: A token: ``kind`` is "word", "op" (&& || ; ;; | |& & ( )) or "redirect"
#: (< > >> <& >& <> >| &> &>> << <<- <<<); ``text`` is a word's value with
#: its quotes removed, ``dynamic`` says it holds an expansion ($x, $(...),
#: `...`) whose value only the shell knows.
Token = collections.namedtuple("Token", "kind text dynamic")

_BLANKS = " \t\n"
_CONTROL = ("&&", "||", ";;", "|&", ";", "|", "&", "(", ")")
_REDIRECT = ("<<<", "<<-", "&>>", "<<", ">>", "<&", ">&", "<>", ">|", "&>", "<", ">")
_CLOSING = {"(": ")", "{": "}"}


def tokens(text):
    """The tokens of one shell command line."""
    result = []
    position = 0
    while position < len(text):
        char = text[position]
        if char in _BLANKS:
            position += 1
            continue
        if char == "#":
            break                                   # a comment: the rest is not read
        operator = _operator_at(text, position)
        if operator is not None:
            kind = "redirect" if operator in _REDIRECT else "op"
            result.append(Token(kind, operator, False))
            position += len(operator)
            continue
        word, dynamic, position = _word(text, position)
        if position < len(text) and text[position] in "<>" and word.isdigit() and not dynamic:
            continue                                # 2>&1: an io number, not a word
        result.append(Token("word", word, dynamic))
    return result


#: Programs whose command-string argument is itself a shell command line.
_SHELLS = frozenset(("sh", "bash", "dash", "ksh", "zsh", "ash", "mksh", "busybox"))


def backgrounds(text, depth=0):
    """Whether the shell command line ``text`` puts something in the
    background (an ``&`` operator: ``nohup X &``, ``a & b``), there or in
    the command string of a shell it runs (``sh -c 'X &'``)."""
    found = tokens(text)
    if any(token.kind == "op" and token.text == "&" for token in found):
        return True
    if depth < 3:
        for index, token in enumerate(found[:-2]):
            if token.kind == "word" and token.text.rsplit("/", 1)[-1] in _SHELLS:
                following = found[index + 1:index + 3]
                if following[0].text.startswith("-") and "c" in following[0].text \
                        and following[1].kind == "word" \
                        and backgrounds(following[1].text, depth + 1):
                    return True
    return False


#: The operators (redirections first: "<<<" before "<"), and the characters
#: one can begin with: a word asks at each of its characters, nearly always
#: one that begins none.
_OPERATORS = _REDIRECT + _CONTROL
_OPERATOR_STARTS = frozenset(operator[0] for operator in _OPERATORS)


def _operator_at(text, position):
    if text[position:position + 1] not in _OPERATOR_STARTS:
        return None
    for operator in _OPERATORS:
        if text.startswith(operator, position):
            return operator
    return None


def _word(text, position):
    """(value, dynamic, end) of the word starting at ``position``."""
    value = []
    dynamic = False
    while position < len(text):
        char = text[position]
        if char in _BLANKS or _operator_at(text, position) is not None:
            break
        if char == "\\":
            value.append(text[position + 1:position + 2])
            position += 2
        elif char == "'":
            end = text.find("'", position + 1)
            end = len(text) if end < 0 else end
            value.append(text[position + 1:end])
            position = end + 1
        elif char == '"':
            part, inner_dynamic, position = _double_quoted(text, position + 1)
            value.append(part)
            dynamic = dynamic or inner_dynamic
        elif char == "`" or (char == "$" and text[position + 1:position + 2] in ("(", "{")):
            end = _expansion_end(text, position)
            value.append(text[position:end])
            dynamic = True
            position = end
        elif char == "$" and _parameter_end(text, position) > position + 1:
            end = _parameter_end(text, position)
            value.append(text[position:end])
            dynamic = True
            position = end
        else:
            value.append(char)
            position += 1
    return "".join(value), dynamic, position


def _double_quoted(text, position):
    value = []
    dynamic = False
    while position < len(text) and text[position] != '"':
        char = text[position]
        if char == "\\" and text[position + 1:position + 2] in ('"', "\\", "$", "`"):
            value.append(text[position + 1])
            position += 2
        elif char == "`" or (char == "$" and text[position + 1:position + 2] in ("(", "{")):
            end = _expansion_end(text, position)
            value.append(text[position:end])
            dynamic = True
            position = end
        else:
            dynamic = dynamic or (char == "$" and _parameter_end(text, position) > position + 1)
            value.append(char)
            position += 1
    return "".join(value), dynamic, position + 1


def _parameter_end(text, position):
    """The end of $NAME, $1 or $? starting at ``position`` (position + 1: a lone $)."""
    following = text[position + 1:position + 2]
    if following and (following.isdigit() or following in "@*#?$!-"):
        return position + 2
    end = position + 1
    while end < len(text) and (text[end].isalnum() or text[end] == "_"):
        end += 1
    return end


def _expansion_end(text, position):
    """The end of `...`, $(...), $((...)) or ${...} starting at ``position``."""
    if text[position] == "`":
        end = position + 1
        while end < len(text) and text[end] != "`":
            end += 2 if text[end] == "\\" else 1
        return min(end + 1, len(text))
    opening = text[position + 1]
    closing = _CLOSING[opening]
    depth = 0
    end = position + 1
    while end < len(text):
        char = text[end]
        if char == "\\":
            end += 2
            continue
        if char == "'" and opening == "(":
            quote_end = text.find("'", end + 1)
            end = len(text) if quote_end < 0 else quote_end + 1
            continue
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return end + 1
        end += 1
    return len(text)
