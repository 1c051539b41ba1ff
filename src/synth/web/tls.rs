//! TLS as the web scenarios' clients and server speak it: ClientHellos as browsers and bot tools
//! send them, the server's TLS 1.3 first flight, and encrypted records of realistic lengths.
//!
//! A hello is built from a [`HelloProfile`]: its cipher suites, extensions (and their order), groups,
//! signature algorithms, ALPN and versions, with GREASE values (RFC 8701) where the real client sends
//! them. Profiles differ the way the real stacks do — BoringSSL's Chrome shuffles its extensions, NSS
//! offers two key shares, Go and OpenSSL send no GREASE — so their JA3/JA4 fingerprints differ.
//! Encrypted records hold random bytes: only their headers and lengths mean anything on the wire.

use super::super::rng::Rng;

/// Record content type of a handshake message.
pub(super) const HANDSHAKE: u8 = 0x16;
/// Record content type of encrypted data (in TLS 1.3 also the encrypted handshake).
pub(super) const APPLICATION_DATA: u8 = 0x17;
/// Record content type of the middlebox-compatibility ChangeCipherSpec.
const CHANGE_CIPHER_SPEC: u8 = 0x14;
/// Record content type of an alert (close_notify, encrypted).
const ALERT: u8 = 0x15;
/// The AEAD tag and inner content type TLS 1.3 adds to every encrypted record.
pub(super) const SEAL: usize = 17;

/// An extension of a ClientHello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ext {
    /// A GREASE extension with no data (first in BoringSSL's hellos).
    Grease,
    /// A GREASE extension holding one zero byte (last in BoringSSL's hellos).
    GreaseOne,
    ServerName,
    ExtendedMasterSecret,
    RenegotiationInfo,
    SupportedGroups,
    EcPointFormats,
    SessionTicket,
    Alpn,
    StatusRequest,
    SignatureAlgorithms,
    SignedCertificateTimestamp,
    KeyShare,
    PskKeyExchangeModes,
    SupportedVersions,
    CompressCertificate,
    ApplicationSettings,
    DelegatedCredentials,
    RecordSizeLimit,
    EncryptThenMac,
    PostHandshakeAuth,
}

impl Ext {
    /// The extension type (GREASE types are drawn per hello).
    fn code(self) -> u16 {
        match self {
            Ext::Grease | Ext::GreaseOne => 0,
            Ext::ServerName => 0x0000,
            Ext::ExtendedMasterSecret => 0x0017,
            Ext::RenegotiationInfo => 0xff01,
            Ext::SupportedGroups => 0x000a,
            Ext::EcPointFormats => 0x000b,
            Ext::SessionTicket => 0x0023,
            Ext::Alpn => 0x0010,
            Ext::StatusRequest => 0x0005,
            Ext::SignatureAlgorithms => 0x000d,
            Ext::SignedCertificateTimestamp => 0x0012,
            Ext::KeyShare => 0x0033,
            Ext::PskKeyExchangeModes => 0x002d,
            Ext::SupportedVersions => 0x002b,
            Ext::CompressCertificate => 0x001b,
            Ext::ApplicationSettings => 0x4469,
            Ext::DelegatedCredentials => 0x0022,
            Ext::RecordSizeLimit => 0x001c,
            Ext::EncryptThenMac => 0x0016,
            Ext::PostHandshakeAuth => 0x0031,
        }
    }
}

/// The padding extension (RFC 7685).
const PADDING: u16 = 0x0015;
const X25519: u16 = 0x001d;
const SECP256R1: u16 = 0x0017;

/// How one TLS client writes its ClientHello.
#[derive(Debug)]
pub(super) struct HelloProfile {
    /// GREASE values first among the cipher suites, groups, key shares and versions.
    grease: bool,
    /// Cipher suites, without GREASE.
    ciphers: &'static [u16],
    /// Extensions in the order sent (before any shuffle).
    exts: &'static [Ext],
    /// The extensions between the first and last GREASE ones come in a random order (Chrome 110+).
    shuffle: bool,
    groups: &'static [u16],
    /// The groups a key share is sent for.
    key_shares: &'static [u16],
    sig_algs: &'static [u16],
    alpn: &'static [&'static str],
    versions: &'static [u16],
    point_formats: &'static [u8],
    /// Certificate compression algorithm (2 brotli, 1 zlib).
    cert_compression: u16,
    /// Pads the handshake message to this many bytes when shorter (BoringSSL: 512); 0: never.
    pad_to: usize,
}

const CHROME_CIPHERS: &[u16] = &[
    0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c,
    0x009d, 0x002f, 0x0035,
];
const CHROME_SIG_ALGS: &[u16] = &[
    0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
];
/// OpenSSL 3's default cipher list (curl, Python).
const OPENSSL_CIPHERS: &[u16] = &[
    0x1302, 0x1303, 0x1301, 0xc02c, 0xc030, 0x009f, 0xcca9, 0xcca8, 0xccaa, 0xc02b, 0xc02f, 0x009e,
    0xc024, 0xc028, 0x006b, 0xc023, 0xc027, 0x0067, 0xc00a, 0xc014, 0x0039, 0xc009, 0xc013, 0x0033,
    0x009d, 0x009c, 0x003d, 0x003c, 0x0035, 0x002f, 0x00ff,
];
const OPENSSL_GROUPS: &[u16] = &[
    X25519, SECP256R1, 0x001e, 0x0019, 0x0018, 0x0100, 0x0101, 0x0102, 0x0103, 0x0104,
];
const OPENSSL_SIG_ALGS: &[u16] = &[
    0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x081a, 0x081b, 0x081c, 0x0809, 0x080a, 0x080b, 0x0804,
    0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0303, 0x0301, 0x0302, 0x0402, 0x0502, 0x0602,
];
const H2_H1: &[&str] = &["h2", "http/1.1"];
const TLS13_12: &[u16] = &[0x0304, 0x0303];

/// What a profile sends unless it says otherwise: no GREASE, its extensions in order, one X25519
/// key share, ALPN h2 and http/1.1, TLS 1.3 and 1.2, uncompressed points only, no certificate
/// compression, no padding. (Ciphers, extensions, groups and signature algorithms every profile
/// names.)
const PLAIN: HelloProfile = HelloProfile {
    grease: false,
    ciphers: &[],
    exts: &[],
    shuffle: false,
    groups: &[],
    key_shares: &[X25519],
    sig_algs: &[],
    alpn: H2_H1,
    versions: TLS13_12,
    point_formats: &[0],
    cert_compression: 0,
    pad_to: 0,
};

/// Chrome 120 and Edge (BoringSSL): GREASE, shuffled extensions, padded to 512 bytes.
pub(super) static CHROME: HelloProfile = HelloProfile {
    grease: true,
    ciphers: CHROME_CIPHERS,
    exts: &[
        Ext::Grease,
        Ext::ServerName,
        Ext::ExtendedMasterSecret,
        Ext::RenegotiationInfo,
        Ext::SupportedGroups,
        Ext::EcPointFormats,
        Ext::SessionTicket,
        Ext::Alpn,
        Ext::StatusRequest,
        Ext::SignatureAlgorithms,
        Ext::SignedCertificateTimestamp,
        Ext::KeyShare,
        Ext::PskKeyExchangeModes,
        Ext::SupportedVersions,
        Ext::CompressCertificate,
        Ext::ApplicationSettings,
        Ext::GreaseOne,
    ],
    shuffle: true,
    groups: &[X25519, SECP256R1, 0x0018],
    sig_algs: CHROME_SIG_ALGS,
    cert_compression: 2,
    pad_to: 512,
    ..PLAIN
};

/// Firefox 120 (NSS): no GREASE, two key shares, delegated credentials, record size limit.
pub(super) static FIREFOX: HelloProfile = HelloProfile {
    ciphers: &[
        0x1301, 0x1303, 0x1302, 0xc02b, 0xc02f, 0xcca9, 0xcca8, 0xc02c, 0xc030, 0xc00a, 0xc009,
        0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
    ],
    exts: &[
        Ext::ServerName,
        Ext::ExtendedMasterSecret,
        Ext::RenegotiationInfo,
        Ext::SupportedGroups,
        Ext::EcPointFormats,
        Ext::SessionTicket,
        Ext::Alpn,
        Ext::StatusRequest,
        Ext::DelegatedCredentials,
        Ext::KeyShare,
        Ext::SupportedVersions,
        Ext::SignatureAlgorithms,
        Ext::PskKeyExchangeModes,
        Ext::RecordSizeLimit,
    ],
    groups: &[X25519, SECP256R1, 0x0018, 0x0019, 0x0100, 0x0101],
    key_shares: &[X25519, SECP256R1],
    sig_algs: &[
        0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0203, 0x0201,
    ],
    ..PLAIN
};

/// Safari 17: GREASE in a fixed order, legacy CBC suites, versions down to TLS 1.0.
pub(super) static SAFARI: HelloProfile = HelloProfile {
    grease: true,
    ciphers: &[
        0x1301, 0x1302, 0x1303, 0xc02c, 0xc02b, 0xcca9, 0xc030, 0xc02f, 0xcca8, 0xc00a, 0xc009,
        0xc014, 0xc013, 0x009d, 0x009c, 0x0035, 0x002f, 0xc008, 0xc012, 0x000a,
    ],
    exts: &[
        Ext::Grease,
        Ext::ServerName,
        Ext::ExtendedMasterSecret,
        Ext::RenegotiationInfo,
        Ext::SupportedGroups,
        Ext::EcPointFormats,
        Ext::Alpn,
        Ext::StatusRequest,
        Ext::SignatureAlgorithms,
        Ext::SignedCertificateTimestamp,
        Ext::KeyShare,
        Ext::PskKeyExchangeModes,
        Ext::SupportedVersions,
        Ext::CompressCertificate,
        Ext::GreaseOne,
    ],
    groups: &[X25519, SECP256R1, 0x0018, 0x0019],
    sig_algs: &[
        0x0403, 0x0804, 0x0401, 0x0503, 0x0203, 0x0805, 0x0501, 0x0806, 0x0601, 0x0201,
    ],
    versions: &[0x0304, 0x0303, 0x0302, 0x0301],
    cert_compression: 1,
    pad_to: 512,
    ..PLAIN
};

/// Go's crypto/tls under net/http (a Go flood tool).
pub(super) static GO: HelloProfile = HelloProfile {
    ciphers: &[
        0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc009, 0xc013, 0xc00a, 0xc014, 0x009c,
        0x009d, 0x002f, 0x0035, 0xc012, 0x000a, 0x1301, 0x1302, 0x1303,
    ],
    exts: &[
        Ext::ServerName,
        Ext::StatusRequest,
        Ext::SupportedGroups,
        Ext::EcPointFormats,
        Ext::SignatureAlgorithms,
        Ext::RenegotiationInfo,
        Ext::Alpn,
        Ext::SignedCertificateTimestamp,
        Ext::SupportedVersions,
        Ext::KeyShare,
        Ext::ExtendedMasterSecret,
        Ext::SessionTicket,
        Ext::PskKeyExchangeModes,
    ],
    groups: &[X25519, SECP256R1, 0x0018, 0x0019],
    sig_algs: &[
        0x0804, 0x0403, 0x0807, 0x0805, 0x0503, 0x0806, 0x0603, 0x0401, 0x0501, 0x0601, 0x0203,
        0x0201,
    ],
    ..PLAIN
};

/// OpenSSL 3 as curl 8 uses it; Python's differs in two places.
const OPENSSL: HelloProfile = HelloProfile {
    ciphers: OPENSSL_CIPHERS,
    exts: &[
        Ext::ServerName,
        Ext::EcPointFormats,
        Ext::SupportedGroups,
        Ext::SessionTicket,
        Ext::Alpn,
        Ext::EncryptThenMac,
        Ext::ExtendedMasterSecret,
        Ext::SignatureAlgorithms,
        Ext::SupportedVersions,
        Ext::PskKeyExchangeModes,
        Ext::KeyShare,
    ],
    groups: OPENSSL_GROUPS,
    sig_algs: OPENSSL_SIG_ALGS,
    point_formats: &[0, 1, 2],
    ..PLAIN
};

/// curl 8 on OpenSSL 3.
pub(super) static CURL: HelloProfile = OPENSSL;

/// Python's requests (urllib3 2 on OpenSSL 3): ALPN http/1.1 only, post-handshake auth.
pub(super) static PYTHON: HelloProfile = HelloProfile {
    exts: &[
        Ext::ServerName,
        Ext::EcPointFormats,
        Ext::SupportedGroups,
        Ext::SessionTicket,
        Ext::Alpn,
        Ext::EncryptThenMac,
        Ext::ExtendedMasterSecret,
        Ext::PostHandshakeAuth,
        Ext::SignatureAlgorithms,
        Ext::SupportedVersions,
        Ext::PskKeyExchangeModes,
        Ext::KeyShare,
    ],
    alpn: &["http/1.1"],
    ..OPENSSL
};

/// A handshake flooder built on OpenSSL 1.1.1: a short cipher list, no ALPN.
pub(super) static FLOODER: HelloProfile = HelloProfile {
    ciphers: &[
        0x1302, 0x1303, 0x1301, 0xc02c, 0xc030, 0xc02b, 0xc02f, 0xcca9, 0xcca8, 0x009f, 0x009e,
        0xc024, 0xc028, 0xc023, 0xc027, 0x00ff,
    ],
    exts: &[
        Ext::ServerName,
        Ext::EcPointFormats,
        Ext::SupportedGroups,
        Ext::SessionTicket,
        Ext::EncryptThenMac,
        Ext::ExtendedMasterSecret,
        Ext::SignatureAlgorithms,
        Ext::SupportedVersions,
        Ext::PskKeyExchangeModes,
        Ext::KeyShare,
    ],
    groups: &[X25519, SECP256R1, 0x0018],
    sig_algs: &[
        0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601,
    ],
    alpn: &[],
    point_formats: &[0, 1, 2],
    ..PLAIN
};

/// A GREASE value (RFC 8701): 0x0a0a, 0x1a1a, … 0xfafa.
fn grease(rng: &mut Rng) -> u16 {
    let b = (rng.below(16) as u16) << 4 | 0x0a;
    b << 8 | b
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// `n` random bytes.
fn random_bytes(rng: &mut Rng, n: usize, out: &mut Vec<u8>) {
    let mut left = n;
    while left > 0 {
        let w = rng.next_u64().to_le_bytes();
        let k = left.min(8);
        out.extend_from_slice(&w[..k]);
        left -= k;
    }
}

/// Writes a length prefix of `width` bytes for what follows `at + width` up to the end of `out`.
fn patch_len(out: &mut [u8], at: usize, width: usize) {
    let n = out.len() - at - width;
    let be = (n as u32).to_be_bytes();
    out[at..at + width].copy_from_slice(&be[4 - width..]);
}

/// The GREASE values one hello uses: for the first cipher, the two extensions, the first group and
/// key share, and the first version. BoringSSL draws them per connection, never two equal
/// extension types.
struct Greases {
    cipher: u16,
    ext1: u16,
    ext2: u16,
    group: u16,
    version: u16,
}

impl Greases {
    fn draw(rng: &mut Rng) -> Greases {
        let ext1 = grease(rng);
        let mut ext2 = grease(rng);
        if ext2 == ext1 {
            ext2 ^= 0x1010;
        }
        Greases {
            cipher: grease(rng),
            ext1,
            ext2,
            group: grease(rng),
            version: grease(rng),
        }
    }
}

/// Appends a TLS record holding a ClientHello of `p` for `sni`; returns its 32-byte session id.
pub(super) fn client_hello(
    p: &HelloProfile,
    sni: &str,
    rng: &mut Rng,
    out: &mut Vec<u8>,
) -> [u8; 32] {
    let g = Greases::draw(rng);
    let rec = out.len();
    out.extend_from_slice(&[HANDSHAKE, 0x03, 0x01, 0, 0]);
    let hs = out.len();
    out.extend_from_slice(&[1, 0, 0, 0]);
    put16(out, 0x0303);
    random_bytes(rng, 32, out);
    let mut sid = [0u8; 32];
    for b in sid.chunks_mut(8) {
        b.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.push(32);
    out.extend_from_slice(&sid);
    let n = p.ciphers.len() + usize::from(p.grease);
    put16(out, (2 * n) as u16);
    if p.grease {
        put16(out, g.cipher);
    }
    for &c in p.ciphers {
        put16(out, c);
    }
    out.extend_from_slice(&[1, 0]);
    let exts_at = out.len();
    put16(out, 0);
    for ext in order(p, rng) {
        extension(p, ext, &g, sni, rng, out);
    }
    if p.pad_to > 0 {
        let hs_len = out.len() - hs;
        if hs_len + 4 < p.pad_to {
            put16(out, PADDING);
            let pad = p.pad_to - hs_len - 4;
            put16(out, pad as u16);
            out.resize(out.len() + pad, 0);
        }
    }
    patch_len(out, exts_at, 2);
    patch_len(out, hs + 1, 3);
    patch_len(out, rec + 3, 2);
    sid
}

/// The extensions of `p` in the order of this hello.
fn order(p: &HelloProfile, rng: &mut Rng) -> Vec<Ext> {
    let mut exts = p.exts.to_vec();
    let n = exts.len();
    if p.shuffle && n > 3 {
        // Fisher-Yates over the middle: the GREASE extensions stay first and last.
        let mid = &mut exts[1..n - 1];
        for i in (1..mid.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            mid.swap(i, j);
        }
    }
    exts
}

/// Appends one extension of a hello.
fn extension(p: &HelloProfile, ext: Ext, g: &Greases, sni: &str, rng: &mut Rng, out: &mut Vec<u8>) {
    let code = match ext {
        Ext::Grease => g.ext1,
        Ext::GreaseOne => g.ext2,
        e => e.code(),
    };
    put16(out, code);
    let at = out.len();
    put16(out, 0);
    match ext {
        Ext::Grease
        | Ext::ExtendedMasterSecret
        | Ext::SessionTicket
        | Ext::SignedCertificateTimestamp
        | Ext::EncryptThenMac
        | Ext::PostHandshakeAuth => {}
        Ext::GreaseOne | Ext::RenegotiationInfo => out.push(0),
        Ext::ServerName => {
            put16(out, (sni.len() + 3) as u16);
            out.push(0);
            put16(out, sni.len() as u16);
            out.extend_from_slice(sni.as_bytes());
        }
        Ext::SupportedGroups => {
            let n = p.groups.len() + usize::from(p.grease);
            put16(out, (2 * n) as u16);
            if p.grease {
                put16(out, g.group);
            }
            for &v in p.groups {
                put16(out, v);
            }
        }
        Ext::EcPointFormats => {
            out.push(p.point_formats.len() as u8);
            out.extend_from_slice(p.point_formats);
        }
        Ext::Alpn => {
            let n: usize = p.alpn.iter().map(|a| a.len() + 1).sum();
            put16(out, n as u16);
            for a in p.alpn {
                out.push(a.len() as u8);
                out.extend_from_slice(a.as_bytes());
            }
        }
        Ext::StatusRequest => out.extend_from_slice(&[1, 0, 0, 0, 0]),
        Ext::SignatureAlgorithms => {
            put16(out, (2 * p.sig_algs.len()) as u16);
            for &v in p.sig_algs {
                put16(out, v);
            }
        }
        Ext::KeyShare => {
            let list = out.len();
            put16(out, 0);
            if p.grease {
                put16(out, g.group);
                put16(out, 1);
                out.push(0);
            }
            for &group in p.key_shares {
                let n = if group == SECP256R1 { 65 } else { 32 };
                put16(out, group);
                put16(out, n as u16);
                if group == SECP256R1 {
                    // An uncompressed point.
                    out.push(4);
                    random_bytes(rng, n - 1, out);
                } else {
                    random_bytes(rng, n, out);
                }
            }
            patch_len(out, list, 2);
        }
        Ext::PskKeyExchangeModes => out.extend_from_slice(&[1, 1]),
        Ext::SupportedVersions => {
            let n = p.versions.len() + usize::from(p.grease);
            out.push((2 * n) as u8);
            if p.grease {
                put16(out, g.version);
            }
            for &v in p.versions {
                put16(out, v);
            }
        }
        Ext::CompressCertificate => {
            out.push(2);
            put16(out, p.cert_compression);
        }
        Ext::ApplicationSettings => out.extend_from_slice(&[0, 3, 2, b'h', b'2']),
        Ext::DelegatedCredentials => {
            put16(out, 8);
            for v in [0x0403u16, 0x0503, 0x0603, 0x0203] {
                put16(out, v);
            }
        }
        Ext::RecordSizeLimit => put16(out, 0x4001),
    }
    patch_len(out, at, 2);
}

/// Appends a record of `kind` whose body is `len` random bytes.
pub(super) fn record(kind: u8, len: usize, rng: &mut Rng, out: &mut Vec<u8>) {
    out.extend_from_slice(&[kind, 0x03, 0x03]);
    put16(out, len as u16);
    random_bytes(rng, len, out);
}

/// Appends the server's first flight to a hello with session id `sid`: ServerHello (TLS 1.3,
/// TLS_AES_128_GCM_SHA256, an x25519 key share), ChangeCipherSpec, and the encrypted
/// EncryptedExtensions, Certificate (`cert_len` bytes of record), CertificateVerify and Finished.
pub(super) fn server_flight(sid: &[u8; 32], cert_len: usize, rng: &mut Rng, out: &mut Vec<u8>) {
    let rec = out.len();
    out.extend_from_slice(&[HANDSHAKE, 0x03, 0x03, 0, 0]);
    let hs = out.len();
    out.extend_from_slice(&[2, 0, 0, 0]);
    put16(out, 0x0303);
    random_bytes(rng, 32, out);
    out.push(32);
    out.extend_from_slice(sid);
    put16(out, 0x1301);
    out.push(0);
    put16(out, 46);
    out.extend_from_slice(&[0x00, 0x2b, 0x00, 0x02, 0x03, 0x04]);
    out.extend_from_slice(&[0x00, 0x33, 0x00, 0x24]);
    put16(out, X25519);
    put16(out, 32);
    random_bytes(rng, 32, out);
    patch_len(out, hs + 1, 3);
    patch_len(out, rec + 3, 2);
    out.extend_from_slice(&[CHANGE_CIPHER_SPEC, 0x03, 0x03, 0x00, 0x01, 0x01]);
    // EncryptedExtensions with ALPN, the certificate chain, an ECDSA P-256 signature (its DER length
    // varies by a byte or two), Finished over SHA-256.
    let verify = 95 + rng.below(3) as usize;
    for len in [32, cert_len, verify, 32 + 4 + SEAL] {
        record(APPLICATION_DATA, len, rng, out);
    }
}

/// Appends the client's end of the handshake: ChangeCipherSpec and the encrypted Finished.
pub(super) fn client_finished(rng: &mut Rng, out: &mut Vec<u8>) {
    out.extend_from_slice(&[CHANGE_CIPHER_SPEC, 0x03, 0x03, 0x00, 0x01, 0x01]);
    record(APPLICATION_DATA, 32 + 4 + SEAL, rng, out);
}

/// Appends the two NewSessionTicket messages an OpenSSL server sends after the client's Finished.
pub(super) fn session_tickets(rng: &mut Rng, out: &mut Vec<u8>) {
    for _ in 0..2 {
        record(APPLICATION_DATA, 234 + SEAL, rng, out);
    }
}

/// Appends an encrypted close_notify alert.
pub(super) fn close_notify(rng: &mut Rng, out: &mut Vec<u8>) {
    record(ALERT, 2 + SEAL, rng, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (type, data) of each extension of a ClientHello record.
    fn extensions(rec: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let be = |i: usize| usize::from(u16::from_be_bytes([rec[i], rec[i + 1]]));
        assert_eq!(&rec[..3], &[0x16, 0x03, 0x01]);
        assert_eq!(be(3), rec.len() - 5);
        assert_eq!(rec[5], 1);
        assert_eq!(&rec[9..11], &[0x03, 0x03]);
        let mut p = 11 + 32;
        p += 1 + usize::from(rec[p]);
        p += 2 + be(p);
        p += 1 + usize::from(rec[p]);
        let end = p + 2 + be(p);
        assert_eq!(end, rec.len());
        p += 2;
        let mut v = Vec::new();
        while p < end {
            let (t, n) = (be(p) as u16, be(p + 2));
            v.push((t, rec[p + 4..p + 4 + n].to_vec()));
            p += 4 + n;
        }
        assert_eq!(p, end);
        v
    }

    fn hello(p: &HelloProfile, seed: u64) -> Vec<u8> {
        let mut out = Vec::new();
        client_hello(p, "www.example.com", &mut Rng::new(seed, 0), &mut out);
        out
    }

    #[test]
    fn hellos_parse_and_carry_sni_alpn_versions() {
        for p in [&CHROME, &FIREFOX, &SAFARI, &GO, &CURL, &PYTHON, &FLOODER] {
            let rec = hello(p, 1);
            let exts = extensions(&rec);
            let sni = exts.iter().find(|e| e.0 == 0).expect("server_name");
            assert!(sni.1.ends_with(b"www.example.com"));
            let versions = exts
                .iter()
                .find(|e| e.0 == 0x2b)
                .expect("supported_versions");
            assert!(versions.1.windows(2).any(|w| w == [3, 4]));
            let alpn = exts.iter().find(|e| e.0 == 0x10);
            assert_eq!(alpn.is_some(), !p.alpn.is_empty());
            let is_grease = |t: u16| t & 0x0f0f == 0x0a0a && t >> 8 == t & 0xff;
            assert_eq!(exts.iter().any(|e| is_grease(e.0)), p.grease);
            if p.pad_to > 0 {
                assert!(rec.len() >= 5 + p.pad_to, "{}", rec.len());
            }
        }
    }

    #[test]
    fn chrome_shuffles_its_extensions_between_the_grease_ones() {
        let types = |seed| -> Vec<u16> {
            extensions(&hello(&CHROME, seed))
                .iter()
                .map(|e| e.0)
                .collect()
        };
        let (a, b) = (types(1), types(2));
        assert_ne!(a, b);
        let (mut sa, mut sb) = (a.clone(), b.clone());
        // The GREASE values differ per hello; the rest is the same set.
        sa.retain(|t| t & 0x0f0f != 0x0a0a);
        sb.retain(|t| t & 0x0f0f != 0x0a0a);
        sa.sort_unstable();
        sb.sort_unstable();
        assert_eq!(sa, sb);
        assert_eq!(a[0] & 0x0f0f, 0x0a0a);
        assert_eq!(*a.last().unwrap(), PADDING);
    }

    #[test]
    fn the_server_flight_is_a_server_hello_then_encrypted_records() {
        let mut out = Vec::new();
        let sid = [7u8; 32];
        server_flight(&sid, 2500, &mut Rng::new(1, 0), &mut out);
        assert_eq!(&out[..3], &[0x16, 0x03, 0x03]);
        assert_eq!(out[5], 2);
        assert_eq!(&out[44..76], &sid);
        let mut p = 0;
        let mut kinds = Vec::new();
        while p < out.len() {
            kinds.push(out[p]);
            p += 5 + usize::from(u16::from_be_bytes([out[p + 3], out[p + 4]]));
        }
        assert_eq!(p, out.len());
        assert_eq!(kinds, [0x16, 0x14, 0x17, 0x17, 0x17, 0x17]);
    }
}
