import PyzfsCore
import Testing

@Suite("Mount options")
struct MountOptionsTests {
    @Test("-oOPTIONS becomes -o OPTIONS; values, words after --, and with untilOperand words from the first operand on, stay")
    func joinedOptionsSeparated() {
        let mount = MountOptions.separatingJoined(["a.pyz", "-oro,uid=1", "d", "-o", "-ox", "-oy", "--", "-oz"], valueOptions: ["-o"], untilOperand: false)
        #expect(mount == ["a.pyz", "-o", "ro,uid=1", "d", "-o", "-ox", "-o", "y", "--", "-oz"])
        let run = MountOptions.separatingJoined(["--python", "-ofake", "-ouid=1", "app.pyz", "-oarg"], valueOptions: ["--python", "-o"], untilOperand: true)
        #expect(run == ["--python", "-ofake", "-o", "uid=1", "app.pyz", "-oarg"])
    }

    @Test func ownOptionsAreTyped() throws {
        let o = try MountOptions.parse(["cache_size=256M,uid=1000,gid=100", "umask=022,log=/tmp/x.log,symlinks=all"])
        #expect(o.cacheSize == 256 << 20)
        #expect(o.uid == 1000 && o.gid == 100)
        #expect(o.umask == 0o022)
        #expect(o.logFile == "/tmp/x.log")
        #expect(o.symlinks == .all)
        #expect(o.libfuse.isEmpty)
    }

    @Test("rw, dev and suid are overridden, not obeyed; ro, nosuid, nodev are implied")
    func overridden() throws {
        let o = try MountOptions.parse(["rw,dev,suid,ro,nosuid,nodev"])
        #expect(o.overridden == ["rw", "dev", "suid"])
        #expect(o.libfuse.isEmpty)
    }

    @Test("libfuse's and mount(8)'s options pass; fstab words are dropped")
    func passThrough() throws {
        let o = try MountOptions.parse(["allow_other,default_permissions,fsname=a\\,b,noatime,defaults,nofail,_netdev,x-systemd.automount,noexec"])
        #expect(o.libfuse == ["allow_other", "default_permissions", "fsname=a\\,b", "noatime", "noexec"])
        #expect(o.noexec)
        #expect(o.libfuseValue("fsname") == "a\\,b")
    }

    @Test("anything else is an error that names it", arguments: [
        ("bogus", OptionError.unknownOption("bogus")),
        ("cache_size=lots", .badValue(option: "cache_size", reason: "'lots' is not a size such as 256M, 1G or 1048576")),
        ("uid=root", .badValue(option: "uid", reason: "'root' is not a numeric user id")),
        ("umask=999", .badValue(option: "umask", reason: "'999' is not an octal mask such as 022")),
        ("log=", .badValue(option: "log", reason: "needs a value (log=...)")),
        ("allow_other=1", .unknownOption("allow_other")),
    ])
    func refused(option: String, error: OptionError) {
        #expect(throws: error) { try MountOptions.parse([option]) }
    }

    @Test func sizes() {
        #expect(parseSize("1048576") == 1_048_576)
        #expect(parseSize("64k") == 65536)
        #expect(parseSize("1.5G") == 1_610_612_736)
        #expect(parseSize("256MiB") == 256 << 20)
        #expect(parseSize("-1") == nil && parseSize("") == nil && parseSize("M") == nil)
        #expect(formatSize(256 << 20) == "256 MiB")
    }

    @Test func defaultCacheSizeIsBounded() {
        let d = MemoryLimits.defaultCacheSize()
        #expect(d >= 64 << 20 && d <= 1 << 30)
    }
}

@Suite("Mount table")
struct MountTableTests {
    @Test func parsesEscapes() {
        let text = """
        36 35 98:0 / /mnt1 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
        99 36 0:52 / /tmp/with\\040space ro,nosuid,nodev,relatime - fuse.pyzfs /srv/app\\040v2.pyz ro,user_id=0,group_id=0
        """
        let records = MountTable.parse(text)
        #expect(records.count == 2)
        #expect(records[1].mountPoint == "/tmp/with space")
        #expect(records[1].source == "/srv/app v2.pyz")
        #expect(records[1].isPyzfs && !records[0].isPyzfs)
        #expect(MountTable.mount(at: "/mnt1", in: records)?.fsType == "ext3")
    }
}
