import PyzfsCore
import Testing

@Suite("Native extension compatibility")
struct CompatibilityTests {
    let cp311 = InterpreterFacts(version: "3.11.7", implementation: "cpython", cacheTag: "cpython-311",
                                 soabi: "cpython-311-x86_64-linux-gnu", machine: "x86_64", libc: "glibc", libcVersion: "2.36")

    @Test func extensionFileNames() {
        #expect(ExtensionTag(fileName: "m.cpython-311-x86_64-linux-gnu.so") == ExtensionTag(fileName: "x.cpython-311-x86_64-linux-gnu.so"))
        #expect(ExtensionTag(fileName: "m.cpython-311-x86_64-linux-gnu.so")?.abi == "cpython-311")
        #expect(ExtensionTag(fileName: "m.cpython-311-x86_64-linux-gnu.so")?.platform == "x86_64-linux-gnu")
        #expect(ExtensionTag(fileName: "m.abi3.so")?.abi == "abi3")
        #expect(ExtensionTag(fileName: "m.so")?.abi == nil)
        #expect(ExtensionTag(fileName: "m.py") == nil)
    }

    @Test func wheelTags() throws {
        let t = try #require(WheelTag("cp311-cp311-manylinux_2_28_x86_64"))
        #expect(t.glibc! == (2, 28) && t.machine == "x86_64" && !t.isMusl)
        #expect(WheelTag("cp39-abi3-manylinux2014_aarch64")!.glibc! == (2, 17))
        #expect(WheelTag("py3-none-any")!.machine == nil)
        #expect(WheelTag("cp311-cp311-musllinux_1_1_x86_64")!.isMusl)
        #expect(WheelTag("nonsense") == nil)
    }

    @Test("an abi3 extension's oldest Python is the lowest cp3X of its wheel's abi3 tags; older interpreters are told, newer ones not")
    func abi3Minimum() throws {
        let tags = { (lines: [String]) in lines.compactMap(WheelTag.init) }
        #expect(Compatibility.abi3Minimum(wheelTags: tags(["cp37-abi3-manylinux_2_17_x86_64"]))! == (3, 7))
        #expect(Compatibility.abi3Minimum(wheelTags: tags(["cp311-abi3-manylinux_2_17_x86_64", "cp39-abi3-musllinux_1_2_x86_64"]))! == (3, 9))
        #expect(Compatibility.abi3Minimum(wheelTags: tags(["cp312.cp310-abi3-manylinux2014_x86_64"]))! == (3, 10))
        #expect(Compatibility.abi3Minimum(wheelTags: tags(["cp311-cp311-manylinux_2_17_x86_64", "py3-none-any"])) == nil)
        #expect(Compatibility.abi3Minimum(wheelTags: []) == nil)

        var cp310 = cp311
        cp310.version = "3.10.13"
        cp310.cacheTag = "cpython-310"
        cp310.soabi = "cpython-310-x86_64-linux-gnu"
        let new = tags(["cp311-abi3-manylinux_2_17_x86_64"]), old = tags(["cp37-abi3-manylinux_2_17_x86_64"])
        #expect(Compatibility.problems(abi3ExtensionOf: old, for: cp310).isEmpty)
        #expect(Compatibility.problems(abi3ExtensionOf: new, for: cp311).isEmpty)  // exactly its minimum
        #expect(Compatibility.problems(abi3ExtensionOf: new, for: cp310)
                == ["an abi3 extension of a wheel tagged cp311-abi3-manylinux_2_17_x86_64: needs Python 3.11+, the interpreter is 3.10"])
        var pypy = cp310
        pypy.implementation = "pypy"
        #expect(Compatibility.problems(abi3ExtensionOf: new, for: pypy).isEmpty)
    }

    @Test("of a project's wheels for several platforms, the one pex would pick: platform, libc kind and level, tag order")
    func preferredWheel() {
        let musl = InterpreterFacts(version: "3.11.7", implementation: "cpython", cacheTag: "cpython-311",
                                    soabi: "cpython-311-x86_64-linux-musl", machine: "x86_64", libc: "musl", libcVersion: "1.2")
        var oldGlibc = cp311
        oldGlibc.libcVersion = "2.12"
        let platforms = ["cp311-cp311-macosx_11_0_x86_64", "cp311-cp311-musllinux_1_1_x86_64",
                         "cp311-cp311-manylinux_2_28_x86_64", "cp311-cp311-manylinux_2_5_x86_64.manylinux1_x86_64",
                         "cp311-cp311-win_amd64"]
        #expect(cp311.preferredWheel(platforms) == 2)  // the newest manylinux glibc 2.36 allows
        #expect(musl.preferredWheel(platforms) == 1)
        #expect(oldGlibc.preferredWheel(platforms) == 3)
        #expect(cp311.preferredWheel(["cp311-cp311-macosx_11_0_x86_64", "cp311-cp311-manylinux_2_39_x86_64"]) == nil)
        // Its own ABI before abi3, abi3 before pure Python, a platform wheel before any.
        #expect(cp311.preferredWheel(["py3-none-any", "cp37-abi3-manylinux_2_17_x86_64", "cp311-cp311-manylinux2014_x86_64"]) == 2)
        #expect(cp311.preferredWheel(["py3-none-any", "cp37-abi3-manylinux_2_17_x86_64"]) == 1)
        #expect(cp311.preferredWheel(["cp312-cp312-manylinux_2_17_x86_64", "py2.py3-none-any"]) == 1)
        #expect(cp311.preferredWheel(["cp312-abi3-manylinux_2_17_x86_64", "cp311-cp311-manylinux_2_17_aarch64"]) == nil)
        let tags = cp311.supportedWheelTags
        #expect(tags.first == "cp311-cp311-manylinux_2_36_x86_64" && tags.last == "py30-none-any", "\(tags.prefix(3)) \(tags.suffix(3))")
        #expect(tags.firstIndex(of: "cp311-cp311-linux_x86_64")! < tags.firstIndex(of: "cp311-abi3-manylinux_2_36_x86_64")!)
    }

    @Test("a wheel loads when any of its tags fits")
    func wheelProblems() {
        let fits = ["cp311-cp311-manylinux_2_17_x86_64", "py3-none-any", "cp38-abi3-manylinux_2_28_x86_64"]
        for t in fits { #expect(Compatibility.problems(wheelTags: [WheelTag(t)!], for: cp311).isEmpty, "\(t)") }
        let bad = ["cp312-cp312-manylinux_2_17_x86_64": "for cp312", "cp311-cp311-manylinux_2_39_x86_64": "needs glibc 2.39",
                   "cp311-cp311-musllinux_1_1_x86_64": "for musl", "cp311-cp311-manylinux_2_17_aarch64": "for aarch64",
                   "cp312-abi3-manylinux_2_17_x86_64": "needs Python 3.12+"]
        for (t, why) in bad {
            let p = Compatibility.problems(wheelTags: [WheelTag(t)!], for: cp311)
            #expect(p.count == 1 && p[0].contains(why), "\(t): \(p)")
        }
        #expect(Compatibility.problems(wheelTags: [WheelTag("cp312-cp312-manylinux_2_17_x86_64")!,
                                                   WheelTag("cp311-cp311-manylinux_2_17_x86_64")!], for: cp311).isEmpty)
    }

    @Test("an extension's name, machine and glibc symbol versions are checked")
    func extensionProblems() {
        #expect(Compatibility.problems(extensionNamed: "m.cpython-311-x86_64-linux-gnu.so", elf: nil, for: cp311).isEmpty)
        #expect(Compatibility.problems(extensionNamed: "m.abi3.so", elf: nil, for: cp311).isEmpty)
        let p = Compatibility.problems(extensionNamed: "m.cpython-312-aarch64-linux-gnu.so", elf: nil, for: cp311)
        #expect(p.count == 2 && p[0].contains("cpython-312") && p[1].contains("aarch64-linux-gnu"), "\(p)")
        var elf = ELFDependencies()
        elf.machine = 183
        elf.requiredVersions = ["GLIBC_2.17", "GLIBC_2.38", "GLIBCXX_3.4"]
        #expect(elf.glibcRequired! == (2, 38))
        let e = Compatibility.problems(extensionNamed: "m.so", elf: elf, for: cp311)
        #expect(e.count == 2 && e[0].contains("aarch64") && e[1].contains("needs glibc 2.38"), "\(e)")
        var musl = cp311
        musl.libc = "musl"
        #expect(Compatibility.problems(extensionNamed: "m.so", elf: elf, for: musl).contains { $0.contains("musl") })
    }
}
