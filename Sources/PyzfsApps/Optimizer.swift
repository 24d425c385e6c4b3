import PyzfsCore
#if canImport(Glibc)
import Glibc
#endif

/// `pyzfs optimize`: the archive rewritten by its target interpreter (ELF stored, pycs unchecked-hash).
public enum Optimizer {
    /// Writes `output` from `opened` through a temporary file renamed into place; never over the input.
    /// - Throws: 73 when `output` is the input or cannot be written, 1 when the rewrite fails.
    public static func rewrite(_ opened: OpenedArchive, with interpreter: Interpreter, to output: String) throws(Failure) {
        let target = absolutePath(output)
        var b = stat()
        if stat(target, &b) == 0, UInt64(b.st_dev) == opened.file.device, UInt64(b.st_ino) == opened.file.inode {
            throw Failure(Exit.badMountPoint, "\(output) is the input archive: pyzfs optimize never overwrites its input; give another OUTPUT")
        }
        let directory = target.split(separator: "/").dropLast().joined(separator: "/")
        guard access("/" + directory, W_OK) == 0 else {
            throw Failure(Exit.badMountPoint, "cannot write \(output): \(errnoText(errno)) in /\(directory); choose an OUTPUT in a writable directory")
        }
        let temporary = target + ".pyzfs-tmp-\(getpid())"
        let progress = isatty(2) != 0 ? "1" : "0"
        let status = runProgram([interpreter.path, "-I", "-c", rewriter, opened.path, temporary, progress])
        guard status == 0 else {
            unlink(temporary)
            throw Failure(Exit.failure, "the rewrite with \(interpreter.path) failed (exit \(status)); \(output) was not written")
        }
        guard rename(temporary, target) == 0 else {
            let e = errno
            unlink(temporary)
            throw Failure(Exit.badMountPoint, "cannot write \(output): \(errnoText(e))")
        }
    }

    /// Adds `profile` to archive `output` as its start profile (`StartProfile.memberName`,
    /// deflated), through a copy renamed into place.
    /// - Throws: 73 when `output` cannot be rewritten, 1 when the interpreter fails.
    public static func addProfile(_ profile: String, to output: String, with interpreter: Interpreter) throws(Failure) {
        let target = absolutePath(output)
        let profilePath = target + ".pyzfs-profile-\(getpid())"
        guard writeFile(profilePath, profile, flags: O_CREAT | O_TRUNC) else {
            throw Failure(Exit.badMountPoint, "cannot write \(profilePath): \(errnoText(errno))")
        }
        defer { unlink(profilePath) }
        let status = runProgram([interpreter.path, "-I", "-c", profileAdder, target, profilePath, StartProfile.memberName])
        guard status == 0 else {
            throw Failure(Exit.failure, "cannot add the start profile to \(output): \(interpreter.path) exited with \(status); \(output) is left without it")
        }
    }

    static let profileAdder = #"""
    import os, shutil, sys, time, zipfile
    dst, profile, name = sys.argv[1:4]
    tmp = dst + ".pyzfs-tmp-%d" % os.getpid()
    try:
        shutil.copyfile(dst, tmp)
        with zipfile.ZipFile(tmp, "a") as z:
            info = zipfile.ZipInfo(name, time.localtime()[:6])
            info.external_attr = 0o100644 << 16
            info.create_system = 3
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(profile, "rb") as f:
                z.writestr(info, f.read())
        os.chmod(tmp, os.stat(dst).st_mode & 0o777)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    """#

    /// Run by the target interpreter: zipfile to read and write (it writes the #! prefix with
    /// absolute offsets, as zipapp does), and the interpreter's own compiler for the pycs.
    static let rewriter = #"""
    import importlib._bootstrap_external as bootstrap
    import importlib.util, os, sys, zipfile

    src, dst, progress = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    tag = sys.implementation.cache_tag
    zin = zipfile.ZipFile(src)
    infos = zin.infolist()
    first = min((i.header_offset for i in infos), default=0)
    with open(src, "rb") as f:
        prefix = f.read(first)
    # Bytecode of this interpreter is made anew; other interpreters' stays.
    def own_pyc(name):
        return "/__pycache__/" in "/" + name and name.endswith(".pyc") and ("." + tag + ".") in name.rsplit("/", 1)[-1]
    stored = compiled = failed = 0
    size_in = sum(i.file_size for i in infos)
    done = 0
    shown = -1
    with open(dst, "wb") as out:
        out.write(prefix)
        with zipfile.ZipFile(out, "w") as zout:
            for info in infos:
                # Bytecode of this interpreter is made anew, and a start profile recorded anew.
                if own_pyc(info.filename) or info.filename == ".pyzfs-profile":
                    continue
                data = zin.read(info)
                new = zipfile.ZipInfo(info.filename, info.date_time)
                new.external_attr = info.external_attr
                new.create_system = info.create_system
                new.comment = info.comment
                shared = data[:4] == b"\x7fELF"
                new.compress_type = zipfile.ZIP_STORED if (shared or info.is_dir()) else zipfile.ZIP_DEFLATED
                stored += shared
                zout.writestr(new, data)
                if info.filename.endswith(".py") and not info.is_dir():
                    head, _, base = info.filename.rpartition("/")
                    try:
                        code = compile(data, info.filename, "exec", dont_inherit=True)
                    except (SyntaxError, ValueError):
                        failed += 1
                    else:
                        pyc = bootstrap._code_to_hash_pyc(code, importlib.util.source_hash(data), checked=False)
                        name = (head + "/" if head else "") + "__pycache__/" + base[:-3] + "." + tag + ".pyc"
                        p = zipfile.ZipInfo(name, info.date_time)
                        p.external_attr = 0o100644 << 16
                        p.create_system = 3
                        p.compress_type = zipfile.ZIP_DEFLATED
                        zout.writestr(p, bytes(pyc))
                        compiled += 1
                done += info.file_size
                if progress and size_in:
                    pct = done * 100 // size_in
                    if pct != shown:
                        shown = pct
                        sys.stderr.write(f"\rpyzfs: optimizing {os.path.basename(src)}: {pct}%")
    if progress:
        sys.stderr.write("\n")
    os.chmod(dst, os.stat(src).st_mode & 0o777)
    print(f"{dst.rsplit('.pyzfs-tmp-', 1)[0]}: {len(infos)} members, {stored} shared libraries stored, "
          f"{compiled} unchecked-hash pycs for {tag}" + (f", {failed} sources that do not compile left as they are" if failed else "")
          + f"; {os.path.getsize(src)} -> {os.path.getsize(dst)} bytes")
    """#
}
