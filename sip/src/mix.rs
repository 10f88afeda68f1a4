//! Mixing for supervisor monitoring: the sums of 20 ms linear PCM frames behind silent
//! monitor (the supervisor hears caller and agent), whisper (the agent hears the caller and
//! the supervisor; the caller hears only the agent) and barge (everyone hears the other two).
//!
//! Start with [`Monitor::mix`]. Frames come from the relay's latest G.711 payload of each leg,
//! expanded with [`decode_frame`]; a leg that sent nothing this tick (loss, silence
//! suppression, hold) is passed as `None` and counts as silence. Sums saturate at the i16
//! limits instead of wrapping, which on the rare loud overlap clips rather than producing a
//! burst of noise. No gain control, no resampling: all legs are 8 kHz G.711.

use crate::g711::Law;
use crate::rtp::FRAME_SAMPLES;

/// One 20 ms frame of 8 kHz linear PCM.
pub type PcmFrame = [i16; FRAME_SAMPLES];

/// A frame of silence.
pub const SILENCE: PcmFrame = [0; FRAME_SAMPLES];

/// Adds `add` into `acc` sample by sample, saturating.
pub fn mix_into(acc: &mut [i16], add: &[i16]) {
    for (a, b) in acc.iter_mut().zip(add) {
        *a = a.saturating_add(*b);
    }
}

/// The saturating sum of the frames given; `None` entries are silence.
pub fn mix(frames: &[Option<&PcmFrame>]) -> PcmFrame {
    let mut out = SILENCE;
    for frame in frames.iter().flatten() {
        mix_into(&mut out, &frame[..]);
    }
    out
}

/// Expands a G.711 payload into a linear frame. A short payload leaves the rest silent; a
/// long one is cut to one frame.
pub fn decode_frame(law: Law, payload: &[u8]) -> PcmFrame {
    let mut out = SILENCE;
    law.decode(payload, &mut out);
    out
}

/// Compresses a linear frame into a G.711 payload.
pub fn encode_frame(law: Law, frame: &PcmFrame) -> [u8; FRAME_SAMPLES] {
    let mut out = [law.silence(); FRAME_SAMPLES];
    law.encode(frame, &mut out);
    out
}

/// How a supervisor takes part in a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Monitor {
    /// Listen only: the supervisor hears both legs; nobody hears the supervisor.
    Silent,
    /// Coach the agent: the agent hears the caller and the supervisor; the caller hears only
    /// the agent.
    Whisper,
    /// Three-way: each party hears the other two.
    Barge,
}

/// What each party of a monitored call hears in one tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mixed {
    /// Sent to the caller.
    pub to_caller: PcmFrame,
    /// Sent to the agent.
    pub to_agent: PcmFrame,
    /// Sent to the supervisor.
    pub to_supervisor: PcmFrame,
}

impl Monitor {
    /// Mixes one tick: the latest frame of each party (`None` for nothing received) in, the
    /// frame each party hears out. In silent mode the supervisor's frame is ignored, so a
    /// supervisor's open microphone can never leak into the call.
    pub fn mix(
        self,
        caller: Option<&PcmFrame>,
        agent: Option<&PcmFrame>,
        supervisor: Option<&PcmFrame>,
    ) -> Mixed {
        let supervisor = match self {
            Monitor::Silent => None,
            Monitor::Whisper | Monitor::Barge => supervisor,
        };
        let to_caller = match self {
            Monitor::Silent | Monitor::Whisper => mix(&[agent]),
            Monitor::Barge => mix(&[agent, supervisor]),
        };
        Mixed {
            to_caller,
            to_agent: mix(&[caller, supervisor]),
            to_supervisor: mix(&[caller, agent]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(value: i16) -> PcmFrame {
        [value; FRAME_SAMPLES]
    }

    #[test]
    fn silent_monitor_sums_both_legs_for_the_supervisor_only() {
        let caller = frame(1000);
        let agent = frame(-300);
        let mic = frame(5000);
        let m = Monitor::Silent.mix(Some(&caller), Some(&agent), Some(&mic));
        assert_eq!(m.to_supervisor, frame(700));
        assert_eq!(m.to_caller, agent, "the caller hears the agent unchanged");
        assert_eq!(m.to_agent, caller, "the supervisor's microphone is ignored");
    }

    #[test]
    fn whisper_reaches_the_agent_only() {
        let caller = frame(1000);
        let agent = frame(2000);
        let mic = frame(300);
        let m = Monitor::Whisper.mix(Some(&caller), Some(&agent), Some(&mic));
        assert_eq!(m.to_agent, frame(1300));
        assert_eq!(m.to_caller, agent);
        assert_eq!(m.to_supervisor, frame(3000));
    }

    #[test]
    fn barge_lets_everyone_hear_the_other_two() {
        let m = Monitor::Barge.mix(Some(&frame(1)), Some(&frame(2)), Some(&frame(4)));
        assert_eq!(
            (m.to_caller, m.to_agent, m.to_supervisor),
            (frame(6), frame(5), frame(3))
        );
    }

    #[test]
    fn sums_saturate_instead_of_wrapping() {
        assert_eq!(
            mix(&[Some(&frame(30_000)), Some(&frame(10_000))]),
            frame(i16::MAX)
        );
        assert_eq!(
            mix(&[Some(&frame(-30_000)), Some(&frame(-10_000))]),
            frame(i16::MIN)
        );
        let mut acc = [i16::MAX, i16::MIN, 5];
        mix_into(&mut acc, &[1, -1, -5]);
        assert_eq!(acc, [i16::MAX, i16::MIN, 0]);
    }

    #[test]
    fn missing_frames_are_silence() {
        let m = Monitor::Silent.mix(None, Some(&frame(42)), None);
        assert_eq!(m.to_supervisor, frame(42));
        assert_eq!(m.to_agent, SILENCE);
        assert_eq!(mix(&[]), SILENCE);
    }

    #[test]
    fn g711_frames_go_through_the_mix() {
        let caller = decode_frame(Law::MuLaw, &[0x80; FRAME_SAMPLES]);
        let agent = decode_frame(Law::MuLaw, &[0xFF; 10]);
        assert_eq!(caller[0], 32124);
        assert_eq!(agent, SILENCE, "short payloads are padded with silence");
        let out = Monitor::Silent.mix(Some(&caller), Some(&agent), None);
        assert_eq!(
            encode_frame(Law::MuLaw, &out.to_supervisor),
            [0x80; FRAME_SAMPLES]
        );
    }
}
