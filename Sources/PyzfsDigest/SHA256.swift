import CCrypto

/// SHA-256 (FIPS 180-4) as a streaming hasher, computed by OpenSSL's libcrypto through EVP:
/// `update` with the bytes in order, in pieces of any size, then `finalize` once. The digest is
/// what sha256sum and Python's hashlib print for the same bytes.
///
/// Owns its `EVP_MD_CTX`; `finalize` consumes the hasher, so nothing can be added afterwards.
/// A failure of libcrypto here (it fails only when it cannot allocate) is a precondition.
public struct SHA256: ~Copyable {
    private let context: OpaquePointer

    /// Byte count of a digest.
    public static let digestCount = 32

    /// A hasher over no bytes yet (`EVP_DigestInit_ex` with `EVP_sha256`).
    public init() {
        guard let context = EVP_MD_CTX_new() else { preconditionFailure("libcrypto cannot allocate a digest context") }
        precondition(EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1, "libcrypto cannot start SHA-256")
        self.context = context
    }

    deinit { EVP_MD_CTX_free(context) }

    /// Adds `bytes` after those added before (`EVP_DigestUpdate`).
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        precondition(EVP_DigestUpdate(context, base, bytes.count) == 1, "libcrypto cannot update SHA-256")
    }

    /// Adds `bytes` after those added before.
    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The 32-byte digest of everything added (`EVP_DigestFinal_ex`).
    public consuming func finalize() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: Self.digestCount)
        var length: UInt32 = 0
        let status = digest.withUnsafeMutableBufferPointer { EVP_DigestFinal_ex(context, $0.baseAddress, &length) }
        precondition(status == 1 && length == Self.digestCount, "libcrypto cannot finish SHA-256")
        return digest
    }

    /// The digest of `bytes` in one call.
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(bytes)
        return hasher.finalize()
    }
}
