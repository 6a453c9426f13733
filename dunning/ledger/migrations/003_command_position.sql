-- Where each command was first read: its partition and offset on its topic. Commands of one
-- subject share a key, so a partition, and their offsets give the order they were emitted in,
-- which logical time cannot when two fall on one instant (a tick's suspension and a payment's
-- restore on the same day).
ALTER TABLE command_log ADD COLUMN source_partition integer;
ALTER TABLE command_log ADD COLUMN source_offset bigint;
CREATE INDEX command_log_position ON command_log (topic, source_partition, source_offset);
