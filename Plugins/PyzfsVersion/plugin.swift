import Foundation
import PackagePlugin

/// Generates `BuildVersion` for the pyzfs target on every build: the version from the VERSION
/// file at the package root (the one place it is defined; the Makefile's `$(VERSION)`, and so the
/// man page and the packages, read the same file) and the commit from git when the package is a
/// git checkout, "unknown" otherwise (a source tarball). A prebuild command, so that a new commit
/// is seen without VERSION changing; the file is rewritten only when its text changes, so an
/// unchanged commit recompiles nothing.
@main
struct PyzfsVersion: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appendingPathComponent("Generated")
        return [.prebuildCommand(
            displayName: "Reading the version of pyzfs from VERSION and git",
            executable: URL(fileURLWithPath: "/bin/sh"),
            arguments: ["-c", Self.script, "sh", context.package.directoryURL.path, output.path],
            outputFilesDirectory: output)]
    }

    static let script = #"""
        set -eu
        root=$1 out=$2
        version=$(cat "$root/VERSION")
        case $version in
          ''|*[!0-9A-Za-z.+~-]*) echo "error: $root/VERSION must hold one version such as 0.1.0, not '$version'" >&2; exit 1;;
        esac
        commit=unknown
        # Only this package's own .git: a tarball unpacked inside another checkout has no commit.
        if [ -e "$root/.git" ] && c=$(git -C "$root" rev-parse --short=7 HEAD 2>/dev/null); then commit=$c; fi
        mkdir -p "$out"
        printf '%s\n' '// Generated at build time by Plugins/PyzfsVersion from VERSION and git: not in the repository.' \
          'enum BuildVersion {' \
          "    static let version = \"$version\"" \
          "    static let commit = \"$commit\"" \
          '}' > "$out/Version.swift.new"
        if cmp -s "$out/Version.swift.new" "$out/Version.swift"; then rm "$out/Version.swift.new"; else mv "$out/Version.swift.new" "$out/Version.swift"; fi
        """#
}
