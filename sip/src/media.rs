//! What a waiting caller hears: sound files and a generated tone cut into 20 ms G.711 frames,
//! and the [`Playlist`] that plays the greeting once, then music on hold in a loop, with
//! one-off messages (a queue position, "all agents are busy") slipped in between.
//!
//! Start with [`Sound`] — a shareable, immutable run of frames in one [`Law`], loaded from
//! WAV bytes ([`Sound::from_wav`]) or generated ([`Tone`], [`Sound::comfort_tone`]) — then
//! [`Playlist::next_frame`]. Nothing here reads files or keeps time: the caller reads the file
//! (and decides what a missing one means, usually [`Sound::from_wav_or_tone`]), and whoever
//! owns the 20 ms timer asks the playlist for one frame per tick and hands it to an
//! [`crate::rtp::Packetizer`].
//!
//! Accepted WAV files: 8000 Hz mono, either 16-bit linear PCM or G.711 µ-law / A-law (format
//! tags 7 and 6, also inside WAVE_FORMAT_EXTENSIBLE). Anything else is rejected with
//! [`MediaError::UnsupportedFormat`] naming what was found; there is no resampling — convert
//! with `sox in.wav -r 8000 -c 1 -e mu-law out.wav`. The RIFF reader is our own: `hound`
//! reads only PCM and float, not the G.711 files telephony sound libraries ship as, and the
//! chunk walk is a few dozen lines (hound is used in the tests as an independent writer).

use std::collections::VecDeque;
use std::f32::consts::TAU;
use std::sync::Arc;
use std::time::Duration;

use crate::g711::Law;
use crate::rtp::FRAME_SAMPLES;

/// Bytes in a 20 ms G.711 frame (one byte per sample at 8 kHz).
pub const FRAME_BYTES: usize = FRAME_SAMPLES;
/// Duration of one frame.
pub const FRAME_DURATION: Duration = Duration::from_millis(20);
/// The only sample rate accepted.
pub const SAMPLE_RATE: u32 = 8000;

/// One 20 ms G.711 frame.
pub type Frame = [u8; FRAME_BYTES];

/// Why sound bytes could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The bytes are not a RIFF/WAVE file.
    #[error("not a WAV file (no RIFF/WAVE header)")]
    NotWav,
    /// A chunk runs past the end of the file.
    #[error("WAV file is truncated")]
    Truncated,
    /// A chunk every WAV file needs is missing.
    #[error("WAV file has no `{0}` chunk")]
    MissingChunk(&'static str),
    /// The audio is not 8 kHz mono 16-bit PCM or G.711.
    #[error(
        "unsupported WAV audio: format tag {format_tag}, {channels} channel(s), {sample_rate} Hz, \
         {bits_per_sample} bits; vacd plays 8000 Hz mono 16-bit PCM, µ-law or A-law"
    )]
    UnsupportedFormat {
        /// The WAVE format tag (1 PCM, 6 A-law, 7 µ-law).
        format_tag: u16,
        /// Number of channels.
        channels: u16,
        /// Sample rate in Hz.
        sample_rate: u32,
        /// Bits per sample.
        bits_per_sample: u16,
    },
    /// The file holds no audio.
    #[error("WAV file contains no audio")]
    Empty,
}

const FORMAT_PCM: u16 = 1;
const FORMAT_ALAW: u16 = 6;
const FORMAT_MULAW: u16 = 7;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// An immutable sound in one G.711 law, a whole number of frames long (the last frame is
/// padded with silence). Cloning shares the samples, so one music-on-hold file serves every
/// waiting caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sound {
    law: Law,
    data: Arc<[u8]>,
}

impl Sound {
    /// Encoded G.711 bytes in `law`, padded to whole frames.
    pub fn from_g711(law: Law, bytes: &[u8]) -> Self {
        let mut data = bytes.to_vec();
        let padded = data.len().div_ceil(FRAME_BYTES) * FRAME_BYTES;
        data.resize(padded, law.silence());
        Self {
            law,
            data: data.into(),
        }
    }

    /// Linear 8 kHz samples, encoded in `law`.
    pub fn from_pcm(law: Law, samples: &[i16]) -> Self {
        let mut data = vec![0u8; samples.len()];
        law.encode(samples, &mut data);
        Self::from_g711(law, &data)
    }

    /// A WAV file's bytes (see the module docs for the accepted formats), encoded in `law`.
    pub fn from_wav(bytes: &[u8], law: Law) -> Result<Self, MediaError> {
        let wav = Wav::parse(bytes)?;
        if wav.data.is_empty() {
            return Err(MediaError::Empty);
        }
        let sound = match wav.format {
            WavAudio::Pcm16 => {
                let samples: Vec<i16> = wav
                    .data
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                Self::from_pcm(law, &samples)
            }
            WavAudio::G711(file_law) => Self::from_g711(file_law, wav.data).to_law(law),
        };
        Ok(sound)
    }

    /// The WAV file if there is one and it is usable, else the [comfort tone](Self::comfort_tone).
    /// A file that is present but unusable is logged: that is a configuration error an admin
    /// should see, but the caller still hears something.
    pub fn from_wav_or_tone(bytes: Option<&[u8]>, law: Law) -> Self {
        match bytes.map(|b| Self::from_wav(b, law)) {
            Some(Ok(sound)) => sound,
            Some(Err(err)) => {
                tracing::warn!(%err, "sound file unusable, playing the comfort tone instead");
                Self::comfort_tone(law)
            }
            None => Self::comfort_tone(law),
        }
    }

    /// One cycle of the default [`Tone`]: 425 Hz, 1 s on, 4 s off.
    pub fn comfort_tone(law: Law) -> Self {
        Tone::default().render(law)
    }

    /// The law the frames are encoded in.
    pub fn law(&self) -> Law {
        self.law
    }

    /// The same sound in another law (shared, not copied, if it is the same law).
    pub fn to_law(&self, law: Law) -> Self {
        if law == self.law {
            return self.clone();
        }
        let data: Vec<u8> = self
            .data
            .iter()
            .map(|c| law.transcode_sample(self.law, *c))
            .collect();
        Self {
            law,
            data: data.into(),
        }
    }

    /// Number of 20 ms frames.
    pub fn frames(&self) -> usize {
        self.data.len() / FRAME_BYTES
    }

    /// Playing time.
    pub fn duration(&self) -> Duration {
        FRAME_DURATION * u32::try_from(self.frames()).unwrap_or(u32::MAX)
    }

    /// Frame `index`, if the sound is that long.
    pub fn frame(&self, index: usize) -> Option<&Frame> {
        let start = index.checked_mul(FRAME_BYTES)?;
        self.data.get(start..start + FRAME_BYTES)?.try_into().ok()
    }
}

/// Audio encodings a WAV file may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WavAudio {
    Pcm16,
    G711(Law),
}

struct Wav<'a> {
    format: WavAudio,
    data: &'a [u8],
}

impl<'a> Wav<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, MediaError> {
        if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
            return Err(MediaError::NotWav);
        }
        let mut rest = &bytes[12..];
        let mut format = None;
        let mut data = None;
        while rest.len() >= 8 {
            let id = &rest[0..4];
            let size = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
            let body_end = 8usize.checked_add(size).ok_or(MediaError::Truncated)?;
            let body = match rest.get(8..body_end) {
                Some(body) => body,
                // Writers that stream sometimes leave the data size too large (or 0xFFFFFFFF);
                // take what is there.
                None if id == b"data" => &rest[8..],
                None => return Err(MediaError::Truncated),
            };
            match id {
                b"fmt " => format = Some(Self::format(body)?),
                b"data" => data = Some(body),
                _ => {}
            }
            // Chunks are padded to an even length.
            let next = body_end.saturating_add(size & 1);
            rest = rest.get(next..).unwrap_or_default();
        }
        let format = format.ok_or(MediaError::MissingChunk("fmt "))?;
        let data = data.ok_or(MediaError::MissingChunk("data"))?;
        let whole = match format {
            WavAudio::Pcm16 => data.len() & !1,
            WavAudio::G711(_) => data.len(),
        };
        Ok(Self {
            format,
            data: &data[..whole],
        })
    }

    fn format(fmt: &[u8]) -> Result<WavAudio, MediaError> {
        if fmt.len() < 16 {
            return Err(MediaError::Truncated);
        }
        let u16_at = |i: usize| u16::from_le_bytes([fmt[i], fmt[i + 1]]);
        let mut format_tag = u16_at(0);
        let channels = u16_at(2);
        let sample_rate = u32::from_le_bytes([fmt[4], fmt[5], fmt[6], fmt[7]]);
        let bits_per_sample = u16_at(14);
        if format_tag == FORMAT_EXTENSIBLE && fmt.len() >= 26 {
            // The sub-format GUID starts with the real format tag.
            format_tag = u16_at(24);
        }
        let audio = match (format_tag, bits_per_sample) {
            (FORMAT_PCM, 16) => Some(WavAudio::Pcm16),
            (FORMAT_MULAW, 8) => Some(WavAudio::G711(Law::MuLaw)),
            (FORMAT_ALAW, 8) => Some(WavAudio::G711(Law::ALaw)),
            _ => None,
        };
        match audio {
            Some(audio) if channels == 1 && sample_rate == SAMPLE_RATE => Ok(audio),
            _ => Err(MediaError::UnsupportedFormat {
                format_tag,
                channels,
                sample_rate,
                bits_per_sample,
            }),
        }
    }
}

/// A generated cadenced tone: a sine at `frequency_hz` for `on`, silence for `off`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tone {
    /// Frequency in Hz.
    pub frequency_hz: f32,
    /// Peak amplitude of the linear samples.
    pub amplitude: i16,
    /// Tone time per cycle.
    pub on: Duration,
    /// Silence per cycle.
    pub off: Duration,
}

impl Default for Tone {
    /// The European ringing tone of ETSI TR 101 041 / CEPT: 425 Hz, 1 s on, 4 s off, at
    /// about −16 dBm0 so it is clearly audible but not harsh.
    fn default() -> Self {
        Self {
            frequency_hz: 425.0,
            amplitude: 4000,
            on: Duration::from_secs(1),
            off: Duration::from_secs(4),
        }
    }
}

impl Tone {
    /// One cycle of the cadence as a [`Sound`]; loop it to play the tone continuously.
    pub fn render(&self, law: Law) -> Sound {
        let samples_of = |d: Duration| {
            usize::try_from(d.as_millis() * u128::from(SAMPLE_RATE) / 1000).unwrap_or(0)
        };
        let on = samples_of(self.on);
        let off = samples_of(self.off);
        let step = TAU * self.frequency_hz / SAMPLE_RATE as f32;
        let amplitude = f32::from(self.amplitude);
        let mut samples = Vec::with_capacity(on + off);
        samples.extend((0..on).map(|n| {
            // The phase is reduced modulo 2π per sample index to keep f32 precision over
            // long tones. The product is at most |amplitude| ≤ 32 767: the cast cannot wrap.
            let phase = (step * n as f32) % TAU;
            (amplitude * phase.sin()) as i16
        }));
        samples.resize(on + off, 0);
        Sound::from_pcm(law, &samples)
    }
}

/// What the [`Playlist`] is playing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NowPlaying {
    /// The greeting (played once, first).
    Greeting,
    /// An inserted one-off message.
    Message,
    /// Music on hold (looped).
    Music,
    /// Nothing: silence frames.
    Silence,
}

#[derive(Debug, Clone)]
struct Cursor {
    sound: Sound,
    position: usize,
}

impl Cursor {
    fn new(sound: Sound) -> Self {
        Self { sound, position: 0 }
    }

    fn done(&self) -> bool {
        self.position >= self.sound.frames()
    }
}

/// The waiting-caller player: the greeting once, then any inserted messages in order, then
/// music on hold in a loop. A message inserted while the music plays interrupts it at the
/// next frame; the music then resumes where it stopped. Sans-IO: call
/// [`next_frame`](Self::next_frame) once per 20 ms tick.
#[derive(Debug, Clone)]
pub struct Playlist {
    law: Law,
    greeting: Option<Cursor>,
    message: Option<Cursor>,
    queued: VecDeque<Sound>,
    music: Option<Cursor>,
    silence: Frame,
}

impl Playlist {
    /// A playlist in `law` (the negotiated codec of the caller's leg). Sounds in the other law
    /// are converted once here.
    pub fn new(law: Law, greeting: Option<Sound>, music: Option<Sound>) -> Self {
        let usable = |s: Sound| (s.frames() > 0).then(|| Cursor::new(s.to_law(law)));
        Self {
            law,
            greeting: greeting.and_then(usable),
            message: None,
            queued: VecDeque::new(),
            music: music.and_then(usable),
            silence: [law.silence(); FRAME_BYTES],
        }
    }

    /// Queues a one-off message: after the greeting and any earlier messages, before the
    /// music resumes.
    pub fn insert(&mut self, message: Sound) {
        if message.frames() > 0 {
            self.queued.push_back(message.to_law(self.law));
        }
    }

    /// Replaces the music on hold (starting from its beginning).
    pub fn set_music(&mut self, music: Option<Sound>) {
        let law = self.law;
        self.music = music
            .filter(|s| s.frames() > 0)
            .map(|s| Cursor::new(s.to_law(law)));
    }

    /// Drops queued and playing messages (e.g. the call is about to be bridged).
    pub fn clear_messages(&mut self) {
        self.message = None;
        self.queued.clear();
    }

    /// What the next call to [`next_frame`](Self::next_frame) will come from.
    pub fn now_playing(&self) -> NowPlaying {
        if self.greeting.as_ref().is_some_and(|c| !c.done()) {
            NowPlaying::Greeting
        } else if self.message.as_ref().is_some_and(|c| !c.done()) || !self.queued.is_empty() {
            NowPlaying::Message
        } else if self.music.is_some() {
            NowPlaying::Music
        } else {
            NowPlaying::Silence
        }
    }

    /// The frame for the next 20 ms.
    pub fn next_frame(&mut self) -> &Frame {
        if self.greeting.as_ref().is_some_and(Cursor::done) {
            self.greeting = None;
        }
        if self.greeting.is_none() {
            while self.message.as_ref().is_none_or(Cursor::done) {
                match self.queued.pop_front() {
                    Some(next) => self.message = Some(Cursor::new(next)),
                    None => {
                        self.message = None;
                        break;
                    }
                }
            }
        }
        if let Some(music) = self.music.as_mut().filter(|c| c.done()) {
            music.position = 0;
        }
        let cursor = match (&mut self.greeting, &mut self.message, &mut self.music) {
            (Some(c), _, _) | (None, Some(c), _) | (None, None, Some(c)) => c,
            (None, None, None) => return &self.silence,
        };
        let index = cursor.position;
        cursor.position += 1;
        cursor.sound.frame(index).unwrap_or(&self.silence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor as IoCursor;

    /// A WAV file written by `hound`, an independent implementation.
    fn pcm_wav(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = IoCursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut out, spec).expect("writer");
        for s in samples {
            writer.write_sample(*s).expect("sample");
        }
        writer.finalize().expect("finalize");
        out.into_inner()
    }

    /// A G.711 WAV by hand (hound cannot write format tags 6/7), with an extra chunk of odd
    /// length before the data to exercise chunk padding.
    fn g711_wav(format_tag: u16, data: &[u8]) -> Vec<u8> {
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&format_tag.to_le_bytes());
        fmt.extend_from_slice(&1u16.to_le_bytes());
        fmt.extend_from_slice(&8000u32.to_le_bytes());
        fmt.extend_from_slice(&8000u32.to_le_bytes());
        fmt.extend_from_slice(&1u16.to_le_bytes());
        fmt.extend_from_slice(&8u16.to_le_bytes());
        fmt.extend_from_slice(&0u16.to_le_bytes());
        let mut body = b"WAVE".to_vec();
        for (id, chunk) in [(b"fmt ", &fmt[..]), (b"LIST", &b"odd"[..]), (b"data", data)] {
            body.extend_from_slice(id);
            body.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
            body.extend_from_slice(chunk);
            if chunk.len() % 2 == 1 {
                body.push(0);
            }
        }
        let mut wav = b"RIFF".to_vec();
        wav.extend_from_slice(&(body.len() as u32).to_le_bytes());
        wav.extend_from_slice(&body);
        wav
    }

    #[test]
    fn loads_8khz_mono_pcm_into_padded_frames() {
        let samples: Vec<i16> = (0..400).map(|i| (i * 50) as i16).collect();
        let sound = Sound::from_wav(&pcm_wav(8000, 1, &samples), Law::MuLaw).expect("valid");
        assert_eq!(sound.frames(), 3, "400 samples → 2.5 frames, padded to 3");
        assert_eq!(sound.duration(), Duration::from_millis(60));
        let first = sound.frame(0).expect("frame");
        assert_eq!(first[0], Law::MuLaw.encode_sample(0));
        assert_eq!(first[10], Law::MuLaw.encode_sample(500));
        let last = sound.frame(2).expect("frame");
        assert_eq!(last[80..], [Law::MuLaw.silence(); 80]);
        assert_eq!(sound.frame(3), None);
    }

    #[test]
    fn loads_g711_wavs_and_converts_between_laws() {
        let ulaw = [0x80u8; 320];
        let sound = Sound::from_wav(&g711_wav(7, &ulaw), Law::MuLaw).expect("µ-law");
        assert_eq!(sound.frames(), 2);
        assert_eq!(sound.frame(1), Some(&[0x80; FRAME_BYTES]));
        let as_alaw = Sound::from_wav(&g711_wav(7, &ulaw), Law::ALaw).expect("µ-law");
        assert_eq!(as_alaw.law(), Law::ALaw);
        assert_eq!(
            as_alaw.frame(0).map(|f| f[0]),
            Some(Law::ALaw.encode_sample(32124))
        );
        let alaw = Sound::from_wav(&g711_wav(6, &[0xD5; 160]), Law::ALaw).expect("A-law");
        assert_eq!(alaw.frame(0), Some(&[0xD5; FRAME_BYTES]));
    }

    #[test]
    fn rejects_other_formats_with_a_clear_error() {
        let err = Sound::from_wav(&pcm_wav(44100, 2, &[0; 100]), Law::MuLaw).expect_err("44.1k");
        assert_eq!(
            err,
            MediaError::UnsupportedFormat {
                format_tag: 1,
                channels: 2,
                sample_rate: 44100,
                bits_per_sample: 16
            }
        );
        assert!(err.to_string().contains("8000 Hz mono"));
        assert_eq!(
            Sound::from_wav(b"ID3 not a wav at all", Law::MuLaw),
            Err(MediaError::NotWav)
        );
        assert_eq!(
            Sound::from_wav(&pcm_wav(8000, 1, &[]), Law::MuLaw),
            Err(MediaError::Empty)
        );
        let mut truncated = pcm_wav(8000, 1, &[1, 2, 3]);
        truncated.truncate(30); // inside the fmt chunk
        assert_eq!(
            Sound::from_wav(&truncated, Law::MuLaw),
            Err(MediaError::Truncated)
        );
        let no_data = &g711_wav(7, &[])[..12 + 8 + 16];
        let mut no_data = no_data.to_vec();
        no_data.extend_from_slice(&[0, 0]); // the rest of the fmt chunk (cbSize)
        assert_eq!(
            Sound::from_wav(&no_data, Law::MuLaw),
            Err(MediaError::MissingChunk("data"))
        );
    }

    #[test]
    fn missing_or_broken_file_falls_back_to_the_tone() {
        let tone = Sound::comfort_tone(Law::ALaw);
        assert_eq!(Sound::from_wav_or_tone(None, Law::ALaw), tone);
        assert_eq!(Sound::from_wav_or_tone(Some(b"junk"), Law::ALaw), tone);
        let real = pcm_wav(8000, 1, &[100; 160]);
        assert_eq!(Sound::from_wav_or_tone(Some(&real), Law::ALaw).frames(), 1);
    }

    #[test]
    fn tone_has_the_cadence_one_second_on_four_off() {
        let law = Law::MuLaw;
        let tone = Sound::comfort_tone(law);
        assert_eq!(tone.frames(), 250, "5 s of 20 ms frames");
        let silent = |f: &Frame| f.iter().all(|b| *b == law.silence());
        for i in 0..50 {
            assert!(!silent(tone.frame(i).expect("frame")), "frame {i} has tone");
        }
        for i in 50..250 {
            assert!(silent(tone.frame(i).expect("frame")), "frame {i} is silent");
        }
        // It is a 425 Hz sine: count zero crossings over the first second.
        let mut pcm = vec![0i16; 8000];
        for i in 0..50 {
            law.decode(
                tone.frame(i).expect("frame"),
                &mut pcm[i * FRAME_BYTES..][..FRAME_BYTES],
            );
        }
        let crossings = pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!((840..=860).contains(&crossings), "{crossings} crossings");
        let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!((3800..=4200).contains(&peak), "peak {peak}");
    }

    fn marked(byte: u8, frames: usize) -> Sound {
        Sound::from_g711(Law::MuLaw, &vec![byte; frames * FRAME_BYTES])
    }

    fn play(p: &mut Playlist, ticks: usize) -> Vec<u8> {
        (0..ticks).map(|_| p.next_frame()[0]).collect()
    }

    #[test]
    fn playlist_plays_greeting_once_then_loops_music() {
        let mut p = Playlist::new(Law::MuLaw, Some(marked(1, 2)), Some(marked(2, 3)));
        assert_eq!(p.now_playing(), NowPlaying::Greeting);
        assert_eq!(play(&mut p, 9), vec![1, 1, 2, 2, 2, 2, 2, 2, 2]);
        assert_eq!(p.now_playing(), NowPlaying::Music);
    }

    #[test]
    fn inserted_message_interrupts_music_which_then_resumes() {
        let music = Sound::from_g711(
            Law::MuLaw,
            &(10u8..14)
                .flat_map(|b| [b; FRAME_BYTES])
                .collect::<Vec<_>>(),
        );
        let mut p = Playlist::new(Law::MuLaw, None, Some(music));
        assert_eq!(play(&mut p, 2), vec![10, 11]);
        p.insert(marked(7, 2));
        p.insert(marked(8, 1));
        assert_eq!(p.now_playing(), NowPlaying::Message);
        assert_eq!(play(&mut p, 7), vec![7, 7, 8, 12, 13, 10, 11]);
    }

    #[test]
    fn messages_wait_for_the_greeting() {
        let mut p = Playlist::new(Law::MuLaw, Some(marked(1, 2)), None);
        p.insert(marked(7, 1));
        assert_eq!(play(&mut p, 5), vec![1, 1, 7, 0xFF, 0xFF]);
        assert_eq!(p.now_playing(), NowPlaying::Silence);
        p.insert(marked(9, 1));
        p.clear_messages();
        assert_eq!(play(&mut p, 1), vec![0xFF]);
    }

    #[test]
    fn playlist_converts_sounds_to_its_law() {
        let mut p = Playlist::new(Law::ALaw, None, Some(marked(0xFF, 1)));
        assert_eq!(p.next_frame(), &[Law::ALaw.silence(); FRAME_BYTES]);
        p.set_music(None);
        assert_eq!(p.now_playing(), NowPlaying::Silence);
    }
}
