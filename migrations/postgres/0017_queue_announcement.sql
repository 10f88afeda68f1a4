-- A queue's periodic announcement ("all our agents are busy, please hold"): a WAV file name in
-- the sounds directory (`sip.sounds`), played to a waiting caller every `announce_every_seconds`
-- of music. Both unset (or either): no announcement. Same in both backends.
ALTER TABLE queues ADD COLUMN announcement TEXT;
ALTER TABLE queues ADD COLUMN announce_every_seconds BIGINT;
