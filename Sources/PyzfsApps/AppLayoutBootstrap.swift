/// What both bootstraps define: an uncaught exception of the app is printed without the
/// bootstrap's frames, as `python3 ARCHIVE` prints it. Raised again as it is (SIGINT's exit
/// status, sys.exit and the app's own sys.excepthook kept), it meets a one-time excepthook that
/// drops the leading frames of this program's globals before the app's hook (or the default)
/// prints it.
extension AppLayout {
    static let hideLauncherFrames = #"""
def hide_launcher_frames(error):
    import sys
    if isinstance(error, SystemExit):
        return
    launcher, hook = globals(), sys.excepthook
    def excepthook(kind, value, tb):
        sys.excepthook = hook
        while tb is not None and tb.tb_frame.f_globals is launcher:
            tb = tb.tb_next
        hook(kind, value.with_traceback(tb), tb)
    sys.excepthook = excepthook
"""#

    /// The Python program that runs a plain zipapp from its mount
    /// (`python -c BOOTSTRAP ROOT ARCHIVE ARGS...`) as `python3 ARCHIVE` runs it: sys.argv[0] is
    /// the archive as written, sys.path[0] the mount, and `__main__.py` runs through runpy as
    /// CPython runs a directory (`__file__`, `__spec__`, `__package__` and a `__main__`
    /// namespace without the bootstrap's names).
    static let zipappBootstrap = #"""
# pyzfs: runs a zipapp from its mount as `python3 ARCHIVE` would.
\#(hideLauncherFrames)
def main():
    import runpy, sys
    hide = globals().pop("hide_launcher_frames")
    del globals()["main"]
    root, archive = sys.argv[1:3]
    sys.argv[:] = [archive] + sys.argv[3:]
    if sys.path and sys.path[0] == "":
        del sys.path[0]  # the working directory, which -c puts first
    sys.path.insert(0, root)
    try:
        runpy._run_module_as_main("__main__", False)
    except BaseException as error:
        hide(error)
        raise

main()
"""#
}

/// The Python program `pyzfs run` gives the interpreter (`python -c BOOTSTRAP N SETTINGS... ARGS...`)
/// to start a shiv or pex app from its mount; `AppLayout.command` writes the settings. It must
/// stay valid for every Python 3 the tools support, and cheap: it imports little beyond what the
/// interpreter has imported at start-up.
extension AppLayout {
    public static let bootstrap = #"""
# pyzfs: starts a shiv or pex app from its mount as the tool's own start-up code would after
# extracting it. sys.argv: ['-c', N, N settings 'key=value' from pyzfs, the app's arguments...];
# the paths in settings are relative to root=, the mount.
import os, sys

def main():
    n = int(sys.argv[1])
    items = [item.partition("=")[::2] for item in sys.argv[2:2 + n]]
    settings = {}
    for key, value in items:
        settings.setdefault(key, []).append(value)
    arguments = sys.argv[2 + n:]
    get = lambda key, default="": settings.get(key, [default])[0]
    if "python" in settings:
        check_interpreter(settings["python"], get("select"))

    # sys.path as the tool sets it, with the mount in place of its extraction directory.
    import site
    root = get("root")
    at = lambda path: os.path.join(root, path) if path else root
    entries = [at(value) for key, value in items if key == "path"]
    if sys.path and sys.path[0] == "":
        del sys.path[0]  # the working directory, which -c puts first
    if get("kind") == "shiv":
        # The app's site-packages (.pth files processed) before the interpreter's.
        count, before = len(sys.path), set(sys.path + [root])
        first = next((i for i, p in enumerate(sys.path) if os.path.basename(p) in ("site-packages", "dist-packages")), count)
        for entry in entries:
            site.addsitedir(entry)
        sys.path[:] = [root] + sys.path[:first] + sys.path[count:] + sys.path[first:count]
        if get("prepend"):
            sys.path.insert(0, get("prepend"))
        if get("extend"):  # subprocesses see the app's packages too
            paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            paths += [p for p in sys.path if p not in before and p not in paths]
            os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    elif get("venv"):
        # A --venv pex in the venv pyzfs wrote: site put the distributions' directories on
        # sys.path (its .pth file), as pex's venv has them in its site-packages; the user code
        # first, PEX_EXTRA_SYS_PATH last.
        sys.path[:] = [root] + sys.path + settings.get("extra", [])
    else:
        # pex: the user code, the standard library, PEX_EXTRA_SYS_PATH, the distributions, pex's
        # own runtime. The interpreter's site-packages and PYTHONPATH only with inherit_path:
        # prefer puts them before the distributions (PYTHONPATH first), fallback after them (the
        # distributions first, in reverse, as pex inserts them; PYTHONPATH after site-packages).
        inherit, extra = get("inherit", "false"), settings.get("extra", [])
        user = [p for p in sys.path if p in os.environ.get("PYTHONPATH", "").split(os.pathsep)]
        rest = [p for p in sys.path if p not in user]
        if inherit == "prefer":
            sys.path[:] = user + [root] + rest + extra + entries
        elif inherit == "fallback":
            sys.path[:] = entries[::-1] + [root] + rest + user + extra
        else:
            sys.path[:] = [root] + [p for p in rest if is_standard_library(p, site)] + extra + entries
        for entry in entries:
            site.addsitedir(entry)
        if os.path.isdir(os.path.join(root, ".bootstrap")):
            sys.path.append(os.path.join(root, ".bootstrap"))
        if extra:  # PEX_EXTRA_SYS_PATH, for subprocesses too
            inherited = [os.environ["PYTHONPATH"]] if inherit != "false" and os.environ.get("PYTHONPATH") else []
            os.environ["PYTHONPATH"] = os.pathsep.join(inherited + extra)

    # The environment and arguments the app sees.
    for name in settings.get("unset", []):
        for key in [k for k in os.environ if k == name or (name.endswith("*") and k.startswith(name[:-1]))]:
            del os.environ[key]
    for item in settings.get("setenv", []):
        name, _, value = item.partition("=")
        os.environ[name] = value
    for item in settings.get("env", []):
        name, _, value = item.partition("=")
        os.environ.setdefault(name, value)
    for item in settings.get("resource", []):
        name, _, resource = item.partition("=")
        found = [f for f in (os.path.join(p, resource) for p in sys.path) if os.path.isfile(f)]
        if not found:
            fail("no %s on sys.path for the resource binding %s" % (resource, name))
        os.environ[name] = found[0]
    sys.argv[:] = [get("argv0")] + [expand(a) for a in settings.get("arg", [])] + arguments
    try:
        if get("preamble"):
            run_preamble(at, at(get("preamble")))
        run(get("kind"), at, *get("run").split(":", 1))
    except BaseException as error:
        hide_launcher_frames(error)
        raise

def run(kind, at, how, what=""):
    import runpy
    if how == "call":  # module:attr.attr, whose result is the exit status
        import importlib
        module, _, attributes = what.partition(":")
        target = importlib.import_module(module)
        for attribute in attributes.split("."):
            target = getattr(target, attribute)
        sys.exit(target())
    elif how == "module":
        runpy.run_module(what, run_name="__main__", alter_sys=True)
    elif how == "script":
        runpy.run_path(at(what), run_name="__main__")
    elif how == "exec":
        os.execv(at(what), [at(what)] + sys.argv[1:])
    else:  # no entry point: an interpreter over the app's path, as both tools offer
        if kind == "pex":
            sys.path.insert(0, "")
        arguments = sys.argv[1:]
        if arguments[:1] == ["-c"] and len(arguments) > 1:
            sys.argv[:] = ["-c"] + arguments[2:]
            exec(compile(arguments[1], "<string>", "exec"), {"__name__": "__main__"})
        elif arguments[:1] == ["-m"] and len(arguments) > 1:
            sys.argv[:] = arguments[1:]
            runpy.run_module(arguments[1], run_name="__main__", alter_sys=True)
        elif arguments[:1] == ["-"]:
            sys.argv[:] = arguments
            exec(compile(sys.stdin.read(), "<stdin>", "exec"), {"__name__": "__main__"})
        elif arguments:
            sys.argv[:] = arguments
            runpy.run_path(arguments[0], run_name="__main__")
        else:
            import code
            code.interact()

def run_preamble(at, preamble):
    # As shiv does, once sys.path is set: a .py file run as __main__ with shiv's names (the
    # mount in place of the extraction directory: site_packages.parent is the mount); anything
    # else run as a program, its status ignored.
    if preamble.endswith(".py"):
        import pathlib, runpy
        from _bootstrap.environment import Environment
        with open(at("environment.json")) as f:
            env = Environment.from_json(f.read())
        names = {"archive": sys.argv[0], "env": env, "site_packages": pathlib.Path(at("site-packages"))}
        runpy.run_path(preamble, init_globals=names, run_name="__main__")
    else:
        import subprocess
        subprocess.run([preamble])

def is_standard_library(path, site):
    path = os.path.join(path, "")
    sites = tuple(os.path.join(p, "") for p in site.getsitepackages() + [site.getusersitepackages()])
    prefixes = tuple(os.path.join(p, "") for p in (sys.base_prefix, sys.base_exec_prefix))
    return path.startswith(prefixes) and not path.startswith(sites)

def expand(argument):  # pex inject_args: "{pex.env.NAME}" is $NAME
    class Environment(object):
        def __getattr__(self, name):
            return os.environ.get(name, "")
    class Pex(object):
        env = Environment()
    return argument.format(pex=Pex()) if "{" in argument else argument

def check_interpreter(constraints, strategy):
    # pex's interpreter_constraints (one must hold): this interpreter, else the oldest (or newest)
    # pythonX.Y on PEX_PYTHON_PATH or PATH that meets them, given the same command line.
    if any(meets(c, sys.version_info[:3]) for c in constraints):
        return
    found = []
    if not os.environ.pop("_PYZFS_PEX_REEXEC", None) and hasattr(sys, "orig_argv"):
        for directory in (os.environ.get("PEX_PYTHON_PATH") or os.environ.get("PATH", "")).split(os.pathsep):
            try:
                names = os.listdir(directory or ".")
            except OSError:
                continue
            for name in names:
                parts = name[len("python"):].split(".") if name.startswith("python") else []
                version = tuple(int(p) for p in parts if p.isdigit())
                if len(version) == len(parts) == 2 and any(meets(c, version + (0,)) for c in constraints):
                    found.append((version, os.path.join(directory, name)))
    if not found:
        fail("%s (Python %s) does not meet this pex's interpreter constraints (%s), nor does any pythonX.Y on PATH or PEX_PYTHON_PATH; pass --python"
             % (sys.executable, sys.version.split()[0], " or ".join(constraints)))
    python = sorted(found)[-1 if strategy == "newest" else 0][1]
    os.environ["_PYZFS_PEX_REEXEC"] = "1"
    os.execv(python, [python] + sys.orig_argv[1:])

def meets(constraint, version):
    # "CPython>=3.8,<3.12", ">=3.9", "==3.11.*", "~=3.10": PEP 440 comparisons of release numbers.
    letters = len(constraint) - len(constraint.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))
    if letters and constraint[:letters].lower() != sys.implementation.name:
        return False
    pad = lambda v: tuple(v) + (0,) * (3 - len(v))
    for clause in filter(None, (c.strip() for c in constraint[letters:].split(","))):
        op = clause[:len(clause) - len(clause.lstrip("<>=!~"))]
        wanted = tuple(int(x) for x in clause[len(op):].strip().rstrip(".*").split("."))
        if clause.endswith(".*") or op == "~=":  # a prefix: ==3.11.*, !=3.11.*, ~=3.10 (>=3.10, ==3.*)
            head = wanted if clause.endswith(".*") else wanted[:-1]
            same = pad(version)[:len(head)] == head
            ok = same and pad(version) >= pad(wanted) if op == "~=" else same == (op == "==")
        else:
            have, need = pad(version), pad(wanted)
            ok = {"==": have == need, "===": have == need, "!=": have != need, ">=": have >= need,
                  "<=": have <= need, ">": have > need, "<": have < need}.get(op, False)
        if not ok:
            return False
    return True

\#(hideLauncherFrames)
def fail(message):
    sys.stderr.write("pyzfs: %s\n" % message)
    sys.exit(125)

main()
"""#
}
