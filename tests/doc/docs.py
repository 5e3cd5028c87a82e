#!/usr/bin/python3
"""What the code accepts and what the man pages and conf/ examples document.

    docs.py TOOL SRCDIR BUILDDIR

Prints one line per check, "NAME: item item ..." listing what disagrees (nothing
after the colon when all agree), and "count NAME: N" lines so a test can tell an
empty difference from an empty extraction. Everything the code accepts is read from
the code: the tool's commands and options from 'p11mtls --help' and 'p11mtls COMMAND
--help', the preload library's keys from shim/conf.c, the provider's parameters from
provider/provider.c, environment variables from getenv calls.
"""
import glob
import os
import re
import subprocess
import sys

tool, src, build = sys.argv[1:4]
OPT = re.compile(r"(?<![\w-])(--?[A-Za-z][A-Za-z0-9-]*)")
IGNORED_OPTS = {"--help", "-h"}


def out(name, items):
    print(f"{name}: {' '.join(sorted(items))}")


def count(name, n):
    print(f"count {name}: {n}")


def help_text(*args):
    r = subprocess.run([tool, *args, "--help"], capture_output=True, text=True)
    return r.stdout + r.stderr


def read(path):
    with open(path) as f:
        return f.read()


# ---- the tool ----
top = help_text()
block = re.search(r"^Commands:\n((?:  \S.*\n)+)", top, re.M)
commands = [line.split()[0] for line in block.group(1).splitlines()] if block else []
count("commands", len(commands))
code_cmds = {}  # "cmd" or "cmd sub" -> options (per command: the union)
code_opts = {}
for cmd in commands:
    text = help_text(cmd)
    subs = set(re.findall(rf"^(?:Usage:)?\s*p11mtls {re.escape(cmd)} ([a-z][a-z-]*)(?=\s|$)",
                          text, re.M))
    for name in [f"{cmd} {s}" for s in subs] or [cmd]:
        code_cmds[name] = cmd
    # Quoted text names other commands ("for 'cert import --chain'"), not options.
    code_opts[cmd] = set(OPT.findall(re.sub(r"'[^'\n]*'", "", text))) - IGNORED_OPTS

man1 = read(os.path.join(build, "man", "p11mtls.1.scd"))
sections = {}  # "cmd [sub]" -> text of its subsection in p11mtls(1)
for m in re.finditer(r"^## p11mtls (.+?)\n(.*?)(?=^#)", man1 + "\n#", re.M | re.S):
    sections[m.group(1).strip()] = m.group(2)
count("man1 subsections", len(sections))
out("man1 commands undocumented", set(code_cmds) - set(sections))
out("man1 commands that do not exist", set(sections) - set(code_cmds))
man_opts = {}
for name, text in sections.items():
    # Documented: an entry of the option list (a line starting with the option), not
    # only a mention in the synopsis.
    for line in re.findall(r"^\*-.*$", text, re.M):
        man_opts.setdefault(name.split()[0], set()).update(
            re.findall(r"\*(--?[A-Za-z][A-Za-z0-9-]*)\*", line))
missing, extra, n = set(), set(), 0
for cmd, opts in code_opts.items():
    n += len(opts)
    missing |= {f"{cmd}:{o}" for o in opts - man_opts.get(cmd, set())}
    extra |= {f"{cmd}:{o}" for o in man_opts.get(cmd, set()) - opts - IGNORED_OPTS}
count("options", n)
out("man1 options undocumented", missing)
out("man1 options that do not exist", extra)
top_opts = {"--help", "-h", "--version"}
global_sect = re.search(r"^# GLOBAL OPTIONS\n(.*?)(?=^# )", man1, re.M | re.S)
out("man1 global options undocumented",
    top_opts - set(re.findall(r"\*(--?[a-z][a-z-]*)\*", global_sect.group(1) if global_sect else "")))


def man_sections(text):
    """{"TITLE": body} of a scdoc page's top-level sections."""
    return {m.group(1): m.group(2)
            for m in re.finditer(r"^# (.+?)\n(.*?)(?=^# |\Z)", text, re.M | re.S)}


def man_keys(body):
    return set(re.findall(r"^\*([a-z][a-z0-9_-]*)\* =", body, re.M))


# ---- the preload library's configuration ----
conf_c = read(os.path.join(src, "shim", "conf.c"))


def func_keys(name):
    m = re.search(rf"^static \w+ {name}\(.*?^}}$", conf_c, re.M | re.S)
    return set(re.findall(r'strcmp\(v->name, "([^"]+)"\)', m.group(0))) if m else set()


code_conf = {"main": func_keys("conf_main_key"), "identity": func_keys("conf_identity_key"),
             "rule": func_keys("conf_rule_key")}
man5 = man_sections(read(os.path.join(build, "man", "p11mtls.conf.5.scd")))
man_conf = {"main": man_keys(man5.get("THE [p11mtls] SECTION", "")),
            "identity": man_keys(man5.get("IDENTITY SECTIONS", "")),
            "rule": man_keys(man5.get("RULE SECTIONS", ""))}
for sect in code_conf:
    count(f"conf {sect} keys", len(code_conf[sect]))
    out(f"man5 {sect} keys undocumented", code_conf[sect] - man_conf[sect])
    out(f"man5 {sect} keys that do not exist", man_conf[sect] - code_conf[sect])
man5_all = "\n".join(man5.values())
every = set(re.findall(r'strcmp\(v->name, "([^"]+)"\)', conf_c))
count("conf.c keys", len(every))
out("conf.c keys not named in man5", {k for k in every if not re.search(rf"\b{re.escape(k)}\b", man5_all)})

# ---- the provider's parameters ----
prov_c = read(os.path.join(src, "provider", "provider.c"))
code_params = set(re.findall(r'^#define PARAM_\w+\s+"([^"]+)"', prov_c, re.M))
man7 = man_sections(read(os.path.join(build, "man", "p11mtls-provider.7.scd")))
doc_params = man_keys(man7.get("PARAMETERS", ""))
count("provider parameters", len(code_params))
out("man7 parameters undocumented", code_params - doc_params)
out("man7 parameters that do not exist", doc_params - code_params)
OPENSSL_KEYS = {"module", "activate", "identity", "soft_load"}


# ---- conf/ examples: keys set or shown commented out ----
def example_sections(path):
    """{section: {key}}: active keys and commented-out ones ("#key = ...")."""
    sects, cur = {}, ""
    for line in read(path).splitlines():
        m = re.match(r"^#?\[\s*([\w.-]+)\s*\]", line)
        if m:
            cur = m.group(1)
            sects.setdefault(cur, {})
            continue
        m = re.match(r"^#?([a-z][a-z0-9_-]*)\s*=\s*(.*?)\s*$", line)
        if m:
            sects.setdefault(cur, {})[m.group(1)] = m.group(2)
    return sects


ex = example_sections(os.path.join(src, "conf", "p11mtls.conf.in"))
main = ex.get("p11mtls", {})
ids = set(ex.get(main.get("identities", ""), {}).values())
rules = set(ex.get(main.get("rules", ""), {}).values())
used = {"main": set(main)}
used["identity"] = set().union(*[set(ex.get(s, {})) for s in ids]) if ids else set()
used["rule"] = set().union(*[set(ex.get(s, {})) for s in rules]) if rules else set()
for sect in used:
    count(f"example {sect} keys", len(used[sect]))
    out(f"conf/p11mtls.conf {sect} keys undocumented", used[sect] - man_conf[sect])
pp = set(ex.get(main.get("provider_params", ""), {}))
out("conf/p11mtls.conf provider_params undocumented", pp - doc_params)
cnf = example_sections(os.path.join(src, "conf", "openssl-p11mtls.cnf.in"))
provs = cnf.get(cnf.get("openssl_init", {}).get("providers", ""), {})
psect = set(cnf.get(provs.get("p11mtls", ""), {}))
count("example provider keys", len(psect))
out("conf/openssl-p11mtls.cnf keys undocumented", psect - doc_params - OPENSSL_KEYS)

# ---- environment variables ----
env = set()
# Every "P11MTLS_..." string literal of the code: getenv("P11MTLS_X") or a macro for it.
for f in glob.glob(os.path.join(src, "*", "**", "*.[ch]"), recursive=True):
    if os.sep + "tests" + os.sep not in f:
        env |= set(re.findall(r'"(P11MTLS_[A-Z0-9_]+)"', read(f)))
pages = [read(p) for p in glob.glob(os.path.join(build, "man", "*.scd"))]
count("environment variables", len(env))
# P11MTLS_TEST_*: fault injection for the test suite (renew killed at a step), not for users.
out("environment variables undocumented",
    {v for v in env if not v.startswith("P11MTLS_TEST_") and not any(re.search(rf"^\*{v}\*", p, re.M) for p in pages)})
out("unsubstituted @VARIABLES@", {m for p in pages for m in re.findall(r"@[A-Z_]+@", p)})
