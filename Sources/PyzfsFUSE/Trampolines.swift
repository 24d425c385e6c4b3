import CFuse3
import PyzfsCore
#if canImport(Glibc)
import Glibc
#endif

// libfuse calls these C function pointers on its worker threads. They must stay out of
// main.swift (whose code is main-actor isolated and traps off the main thread), capture
// nothing, and reach the server's state through the request's userdata.

@inline(__always)
private func context(_ req: fuse_req_t?) -> SessionContext {
    let c = Unmanaged<SessionContext>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
    c.operations.requests.add(1, ordering: .relaxed)
    return c
}

@inline(__always)
private func reply(_ req: fuse_req_t?) -> KernelResponder { KernelResponder(req: req!) }

func makeOperations() -> fuse_lowlevel_ops {
    var o = fuse_lowlevel_ops()
    o.`init` = { userdata, conn in
        let ctx = Unmanaged<SessionContext>.fromOpaque(userdata!).takeUnretainedValue()
        ctx.initialize(conn!)
    }
    o.lookup = { req, parent, name in context(req).operations.lookup(reply(req), parent: parent, name: name!) }
    o.forget = { req, _, _ in context(req).operations.forget(reply(req)) }
    o.forget_multi = { req, _, _ in context(req).operations.forget(reply(req)) }
    o.getattr = { req, ino, _ in context(req).operations.getattr(reply(req), ino: ino) }
    o.readlink = { req, ino in context(req).operations.readlink(reply(req), ino: ino) }
    o.open = { req, ino, fi in context(req).operations.open(reply(req), ino: ino, fi: fi) }
    o.read = { req, ino, size, off, _ in context(req).operations.read(reply(req), ino: ino, size: size, offset: Int(off)) }
    o.release = { req, _, _ in context(req).operations.release(reply(req)) }
    o.opendir = { req, ino, fi in context(req).operations.opendir(reply(req), ino: ino, fi: fi) }
    o.readdir = { req, ino, size, off, _ in
        context(req).operations.readdir(reply(req), ino: ino, size: size, offset: Int(off), plus: false)
    }
    o.readdirplus = { req, ino, size, off, _ in
        context(req).operations.readdir(reply(req), ino: ino, size: size, offset: Int(off), plus: true)
    }
    o.releasedir = { req, _, _ in context(req).operations.release(reply(req)) }
    o.statfs = { req, _ in context(req).operations.statfs(reply(req)) }
    o.getxattr = { req, ino, name, size in context(req).operations.getxattr(reply(req), ino: ino, name: name!, size: size) }
    o.listxattr = { req, ino, size in context(req).operations.listxattr(reply(req), ino: ino, size: size) }
    // The kernel refuses these itself on a read-only mount. With an in-memory bytecode cache the
    // mount is read-write and the handlers allow only what importlib does in __pycache__.
    o.setattr = { req, ino, attr, toSet, _ in context(req).operations.setattr(reply(req), ino: ino, attr: attr, toSet: toSet) }
    o.mknod = { req, _, _, _, _ in context(req).operations.refuseWrite(reply(req)) }
    o.mkdir = { req, parent, name, _ in context(req).operations.mkdir(reply(req), parent: parent, name: name!) }
    o.unlink = { req, parent, name in context(req).operations.unlink(reply(req), parent: parent, name: name!) }
    o.rmdir = { req, _, _ in context(req).operations.refuseWrite(reply(req)) }
    o.symlink = { req, _, _, _ in context(req).operations.refuseWrite(reply(req)) }
    o.rename = { req, parent, name, newParent, newName, flags in
        context(req).operations.rename(reply(req), parent: parent, name: name!, newParent: newParent, newName: newName!, flags: flags)
    }
    o.link = { req, _, _, _ in context(req).operations.refuseWrite(reply(req)) }
    o.write = { req, ino, buf, size, off, _ in
        context(req).operations.write(reply(req), ino: ino, bytes: UnsafeRawBufferPointer(start: buf, count: size), offset: Int(off))
    }
    o.create = { req, parent, name, _, fi in context(req).operations.create(reply(req), parent: parent, name: name!, fi: fi) }
    o.setxattr = { req, _, _, _, _, _ in context(req).operations.refuseWrite(reply(req)) }
    o.removexattr = { req, _, _ in context(req).operations.refuseWrite(reply(req)) }
    return o
}

/// Routes libfuse's own messages (which carry no userdata) to the server's log.
let libfuseLogFunction: fuse_log_func_t = { level, format, args in
    var buffer = [CChar](repeating: 0, count: 1024)
    guard let format, let args else { return }
    _ = vsnprintf(&buffer, buffer.count, format, args)
    let length = buffer.firstIndex(of: 0) ?? buffer.count
    var text = String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    while text.hasSuffix("\n") { text.removeLast() }
    LibfuseLog.shared.record(level: level.rawValue, text)
}
