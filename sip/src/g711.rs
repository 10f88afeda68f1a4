//! G.711 (ITU-T G.711): the two 8-bit companding laws every SIP phone speaks — µ-law (PCMU,
//! RTP payload type 0, North America and Japan) and A-law (PCMA, payload type 8, the rest of
//! the world) — to and from 16-bit linear PCM.
//!
//! Start with [`Law`]: [`Law::encode`] / [`Law::decode`] turn whole frames around, and
//! [`Law::encode_sample`] / [`Law::decode_sample`] single samples. Decoding is a lookup in a
//! 256-entry table built at compile time; encoding is the segment search of the classic Sun
//! Microsystems reference implementation (public domain), which is the bit-exact G.711
//! quantiser. No crate is used: the whole codec is a few dozen lines and has no edge cases a
//! dependency would handle better.
//!
//! This module knows nothing about RTP or files: [`crate::media`] uses it to turn WAV files
//! into frames, [`crate::mix`] works on the linear side.

/// A G.711 companding law.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// µ-law, RTP "PCMU", static payload type 0.
    MuLaw,
    /// A-law, RTP "PCMA", static payload type 8.
    ALaw,
}

const QUANT_MASK: u8 = 0x0F;
const SEG_SHIFT: u32 = 4;
const SEG_MASK: u8 = 0x70;
const SIGN_BIT: u8 = 0x80;
const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 8159;
const SEG_AEND: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
const SEG_UEND: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];

static ULAW_TO_LINEAR: [i16; 256] = decode_table(Law::MuLaw);
static ALAW_TO_LINEAR: [i16; 256] = decode_table(Law::ALaw);

impl Law {
    /// The static RTP payload type of this law (RFC 3551).
    pub const fn payload_type(self) -> u8 {
        match self {
            Law::MuLaw => 0,
            Law::ALaw => 8,
        }
    }

    /// The RTP encoding name used in `a=rtpmap` (RFC 3551).
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Law::MuLaw => "PCMU",
            Law::ALaw => "PCMA",
        }
    }

    /// The law for a static payload type, if it is 0 or 8.
    pub const fn from_payload_type(pt: u8) -> Option<Law> {
        match pt {
            0 => Some(Law::MuLaw),
            8 => Some(Law::ALaw),
            _ => None,
        }
    }

    /// The law for an encoding name (`PCMU`, `PCMA`), case-insensitively.
    pub fn from_encoding_name(name: &str) -> Option<Law> {
        [Law::MuLaw, Law::ALaw]
            .into_iter()
            .find(|law| law.encoding_name().eq_ignore_ascii_case(name))
    }

    /// The code of linear 0: what a frame of silence is filled with.
    pub const fn silence(self) -> u8 {
        match self {
            Law::MuLaw => 0xFF,
            Law::ALaw => 0xD5,
        }
    }

    /// Compresses one linear sample.
    pub fn encode_sample(self, sample: i16) -> u8 {
        match self {
            Law::MuLaw => linear_to_ulaw(sample),
            Law::ALaw => linear_to_alaw(sample),
        }
    }

    /// Expands one code to a linear sample.
    pub fn decode_sample(self, code: u8) -> i16 {
        match self {
            Law::MuLaw => ULAW_TO_LINEAR[usize::from(code)],
            Law::ALaw => ALAW_TO_LINEAR[usize::from(code)],
        }
    }

    /// Compresses `pcm` into `out`, sample by sample; the shorter of the two decides how many.
    pub fn encode(self, pcm: &[i16], out: &mut [u8]) {
        for (o, s) in out.iter_mut().zip(pcm) {
            *o = self.encode_sample(*s);
        }
    }

    /// Expands `codes` into `out`; the shorter of the two decides how many.
    pub fn decode(self, codes: &[u8], out: &mut [i16]) {
        let table = match self {
            Law::MuLaw => &ULAW_TO_LINEAR,
            Law::ALaw => &ALAW_TO_LINEAR,
        };
        for (o, c) in out.iter_mut().zip(codes) {
            *o = table[usize::from(*c)];
        }
    }

    /// Re-encodes one code of the other law into this one (PCMU ↔ PCMA), through linear.
    pub fn transcode_sample(self, from: Law, code: u8) -> u8 {
        if self == from {
            code
        } else {
            self.encode_sample(from.decode_sample(code))
        }
    }
}

/// The first segment whose end is at or above `value`; 8 if none.
const fn segment(value: i32, ends: &[i32; 8]) -> usize {
    let mut i = 0;
    while i < 8 {
        if value <= ends[i] {
            return i;
        }
        i += 1;
    }
    8
}

fn linear_to_ulaw(sample: i16) -> u8 {
    let mut pcm = i32::from(sample) >> 2;
    let mask: u8 = if pcm < 0 {
        pcm = -pcm;
        0x7F
    } else {
        0xFF
    };
    pcm = pcm.min(ULAW_CLIP) + (ULAW_BIAS >> 2);
    let seg = segment(pcm, &SEG_UEND);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    // `seg` < 8 and the shifted value is masked to four bits: both casts are lossless.
    let code = ((seg as u8) << SEG_SHIFT) | ((pcm >> (seg + 1)) as u8 & QUANT_MASK);
    code ^ mask
}

fn linear_to_alaw(sample: i16) -> u8 {
    let mut pcm = i32::from(sample) >> 3;
    let mask: u8 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let seg = segment(pcm, &SEG_AEND);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let shift = if seg < 2 { 1 } else { seg };
    let code = ((seg as u8) << SEG_SHIFT) | ((pcm >> shift) as u8 & QUANT_MASK);
    code ^ mask
}

const fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let mut t = (((u & QUANT_MASK) as i32) << 3) + ULAW_BIAS;
    t <<= ((u & SEG_MASK) >> SEG_SHIFT) as u32;
    // |t| ≤ 32 256 + 132: fits an i16.
    (if u & SIGN_BIT != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    }) as i16
}

const fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & QUANT_MASK) as i32) << 4;
    let seg = ((a & SEG_MASK) >> SEG_SHIFT) as u32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    // |t| ≤ 32 256: fits an i16.
    (if a & SIGN_BIT != 0 { t } else { -t }) as i16
}

const fn decode_table(law: Law) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = match law {
            Law::MuLaw => ulaw_to_linear(i as u8),
            Law::ALaw => alaw_to_linear(i as u8),
        };
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mu_law_known_values() {
        // Silence, full scale and a few mid-range points of the G.711 µ-law table.
        assert_eq!(Law::MuLaw.encode_sample(0), 0xFF);
        assert_eq!(Law::MuLaw.decode_sample(0xFF), 0);
        assert_eq!(Law::MuLaw.decode_sample(0x7F), 0, "negative zero");
        assert_eq!(Law::MuLaw.decode_sample(0x80), 32124);
        assert_eq!(Law::MuLaw.decode_sample(0x00), -32124);
        assert_eq!(Law::MuLaw.encode_sample(i16::MAX), 0x80);
        assert_eq!(Law::MuLaw.encode_sample(i16::MIN), 0x00);
        // The first level of each segment: 0, 132, 396, …, 8316 (G.711 Table 2a).
        assert_eq!(Law::MuLaw.decode_sample(0xF0), 120);
        assert_eq!(Law::MuLaw.decode_sample(0xEF), 132);
        assert_eq!(Law::MuLaw.decode_sample(0xDF), 396);
        assert_eq!(Law::MuLaw.decode_sample(0x9F), 8316);
        assert_eq!(Law::MuLaw.encode_sample(1000), 0xCE);
        assert_eq!(Law::MuLaw.encode_sample(-1000), 0x4E);
    }

    #[test]
    fn a_law_known_values() {
        assert_eq!(Law::ALaw.encode_sample(0), 0xD5);
        assert_eq!(Law::ALaw.decode_sample(0xD5), 8);
        assert_eq!(Law::ALaw.decode_sample(0x55), -8);
        assert_eq!(Law::ALaw.decode_sample(0xAA), 32256);
        assert_eq!(Law::ALaw.decode_sample(0x2A), -32256);
        assert_eq!(Law::ALaw.encode_sample(i16::MAX), 0xAA);
        assert_eq!(Law::ALaw.encode_sample(i16::MIN), 0x2A);
        assert_eq!(Law::ALaw.decode_sample(0xC5), 264);
        assert_eq!(Law::ALaw.encode_sample(1000), 0xFA);
        assert_eq!(Law::ALaw.encode_sample(-1000), 0x7A);
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for code in 0..=255u8 {
            assert_eq!(
                Law::ALaw.encode_sample(Law::ALaw.decode_sample(code)),
                code,
                "A-law {code:#04x}"
            );
            // µ-law has two zeros; 0x7F (−0) comes back as 0xFF (+0).
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(
                Law::MuLaw.encode_sample(Law::MuLaw.decode_sample(code)),
                expected,
                "µ-law {code:#04x}"
            );
        }
    }

    #[test]
    fn decoding_is_monotonic_per_sign() {
        for law in [Law::MuLaw, Law::ALaw] {
            let mut values: Vec<i16> = (0..=255u8).map(|c| law.decode_sample(c)).collect();
            values.sort_unstable();
            values.dedup();
            assert!(values.len() >= 255, "{law:?} has distinct levels");
        }
    }

    #[test]
    fn payload_types_and_names() {
        assert_eq!(Law::from_payload_type(0), Some(Law::MuLaw));
        assert_eq!(Law::from_payload_type(8), Some(Law::ALaw));
        assert_eq!(Law::from_payload_type(18), None);
        assert_eq!(Law::from_encoding_name("pcma"), Some(Law::ALaw));
        assert_eq!(Law::MuLaw.encoding_name(), "PCMU");
        // A-law's smallest positive level (8) is µ-law 0xFE, not µ-law zero.
        assert_eq!(Law::MuLaw.transcode_sample(Law::ALaw, 0xD5), 0xFE);
    }

    #[test]
    fn frame_helpers_encode_and_decode_whole_slices() {
        let pcm = [0i16, 1000, -1000, i16::MAX];
        let mut codes = [0u8; 4];
        Law::MuLaw.encode(&pcm, &mut codes);
        assert_eq!(codes, [0xFF, 0xCE, 0x4E, 0x80]);
        let mut back = [0i16; 4];
        Law::MuLaw.decode(&codes, &mut back);
        assert_eq!(back[0], 0);
        assert_eq!(back[3], 32124);
    }

    proptest! {
        /// The quantisation error is bounded by half a step of the segment the sample falls in:
        /// at most 1/16 of the magnitude plus the smallest step.
        #[test]
        fn round_trip_error_is_within_one_quantisation_step(sample in any::<i16>()) {
            for law in [Law::MuLaw, Law::ALaw] {
                let back = law.decode_sample(law.encode_sample(sample));
                let err = (i32::from(sample) - i32::from(back)).abs();
                let bound = i32::from(sample).abs() / 16 + 16;
                // Full-scale samples are clipped to the largest code.
                let clipped = i32::from(sample).abs() > 32124;
                prop_assert!(clipped || err <= bound, "{law:?}: {sample} -> {back} (err {err})");
                // And the sign is kept (zero may come back as ±8 in A-law).
                let (s, b) = (i32::from(sample), i32::from(back));
                prop_assert!(s.signum() * b.signum() >= 0 || s.abs() < 16);
            }
        }
    }
}
