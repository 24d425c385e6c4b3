import Foundation
import Glibc
@testable import PyzfsApps
import PyzfsTestSupport
import Testing

/// The interpreter facts taken from a binary's name without running it, and what is asked instead.
@Suite("Interpreter facts without a probe")
struct InterpreterProbeTests {
    @Test("a CPython binary named pythonX.Y (through symlinks) is known by its name; the probe agrees")
    func binaryByName() throws {
        let python = "/usr/bin/python3"
        let real = try #require(realpath(python, nil), "this test needs Debian's python3 at /usr/bin")
        defer { free(real) }
        try #require(String(cString: real).hasSuffix("/python3.11"), "this test needs Debian's python3.11 at /usr/bin")
        let quick = try #require(InterpreterProbe.quickFacts(of: python))
        let asked = try #require(InterpreterProbe.facts(of: python))
        #expect(quick.cacheTag == asked.cacheTag && quick.soabi == asked.soabi && quick.machine == asked.machine)
        #expect(asked.version.hasPrefix(quick.version))
    }

    @Test("a wrapper named pythonX.Y (a pyenv shim is a shell script) is asked, not trusted by its name",
          arguments: ["#!/bin/sh\nexec /usr/bin/python3 \"$@\"\n", "", "\u{7F}EL"])
    func wrapperIsAsked(content: String) throws {
        let dir = makeTemporaryDirectory("probe")
        defer { removeTree(dir) }
        let wrapper = dir + "/python3.9"
        try content.write(toFile: wrapper, atomically: true, encoding: .utf8)
        chmod(wrapper, 0o755)
        #expect(InterpreterProbe.quickFacts(of: wrapper) == nil)
    }
}
