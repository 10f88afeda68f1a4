-- A queue's own greeting and music on hold: WAV file names in the sounds directory
-- (`sip.sounds`); unset, the directory's greeting.wav and music.wav play.
ALTER TABLE queues ADD COLUMN greeting TEXT;
ALTER TABLE queues ADD COLUMN music TEXT;
