/// An archive opened, indexed and ready to serve: what `mount` and `run` share.
public struct OpenedArchive {
    public let path: String
    public let file: ArchiveFile
    public let index: ZipIndex
    public let filesystem: ArchiveFileSystem
    public init(path: String, file: ArchiveFile, index: ZipIndex, filesystem: ArchiveFileSystem) {
        self.path = path
        self.file = file
        self.index = index
        self.filesystem = filesystem
    }

    /// Whether the mount accepts bytecode into memory (and so cannot be a read-only kernel mount).
    public var acceptsBytecode: Bool { filesystem.overlay != nil }
}
