//! The SCLP interface as the architecture defines it: command words, response codes, event
//! types and masks, and the big-endian SCCB layouts this driver reads and writes.
//!
//! Every layout is a plain struct with a `SIZE` constant computed from its fields and an
//! `encode`/`decode` pair over byte slices; SCCB lengths are always taken from those sizes, never
//! written as literals (QEMU 7.2 corrupts its heap on a WRITE EVENT MASK that is 4 bytes short).
//! Sources: kvm-unit-tests `lib/s390x/sclp.h`, QEMU `hw/s390x/event-facility.c`,
//! `hw/char/sclpconsole-lm.c`, Linux `drivers/s390/char/sclp_rw.h`.

/// SCLP command words (the R1 operand of SERVC).
pub mod command {
    /// READ SCP INFO: machine configuration (memory increments, CPUs, facilities).
    pub const READ_SCP_INFO: u32 = 0x0002_0001;
    /// READ SCP INFO FORCED: as READ SCP INFO, also when the configuration is not yet "loaded".
    pub const READ_SCP_INFO_FORCED: u32 = 0x0012_0001;
    /// WRITE EVENT DATA: hand event buffers (console output) to the SCLP.
    pub const WRITE_EVENT_DATA: u32 = 0x0076_0005;
    /// READ EVENT DATA: fetch pending event buffers (console input).
    pub const READ_EVENT_DATA: u32 = 0x0077_0005;
    /// WRITE EVENT MASK: announce which events we send and receive.
    pub const WRITE_EVENT_MASK: u32 = 0x0078_0005;
}

/// SCLP response codes (SCCB header bytes 6-7).
pub mod response {
    /// Normal completion of a read command (READ SCP INFO).
    pub const NORMAL_READ_COMPLETION: u16 = 0x0010;
    /// Normal completion (event commands).
    pub const NORMAL_COMPLETION: u16 = 0x0020;
    /// The SCCB crosses a 4 KiB boundary.
    pub const SCCB_BOUNDARY_VIOLATION: u16 = 0x0100;
    /// The command word is not known to this SCLP.
    pub const INVALID_COMMAND: u16 = 0x01f0;
    /// The SCCB is too short for the request or its answer.
    pub const INSUFFICIENT_SCCB_LENGTH: u16 = 0x0300;
    /// Contained SCLP equipment check.
    pub const CONTAINED_EQUIPMENT_CHECK: u16 = 0x0340;
    /// "Not active because of the state of the machine": what z/VM answers for its advertised
    /// but non-functional VT220 (ASCII) console.
    pub const NOT_ACTIVE: u16 = 0x05f0;
    /// Invalid function; QEMU answers it for an event type no device handles.
    pub const INVALID_FUNCTION: u16 = 0x40f0;
    /// READ EVENT DATA found no event buffer to store.
    pub const NO_EVENT_BUFFERS_STORED: u16 = 0x60f0;
    /// Invalid selection mask.
    pub const INVALID_SELECTION_MASK: u16 = 0x70f0;
    /// The lengths in the SCCB and its event buffers do not agree.
    pub const INCONSISTENT_LENGTHS: u16 = 0x72f0;
    /// Event buffer syntax error.
    pub const EVENT_BUFFER_SYNTAX_ERROR: u16 = 0x73f0;
    /// Invalid mask length in WRITE EVENT MASK.
    pub const INVALID_MASK_LENGTH: u16 = 0x74f0;
}

/// Condition codes of SERVC.
pub mod condition_code {
    /// The command was accepted; completion is signalled by a service-signal interrupt.
    pub const ACCEPTED: u8 = 0;
    /// The SCLP is busy with another request; try again.
    pub const BUSY: u8 = 2;
    /// The SCLP is not operational.
    pub const NOT_OPERATIONAL: u8 = 3;
}

/// Event types carried in event buffers.
pub mod event_type {
    /// Operator command (line-mode input).
    pub const OPERATOR_COMMAND: u8 = 0x01;
    /// Message (line-mode output, EBCDIC MDB/GO/MTO).
    pub const MESSAGE: u8 = 0x02;
    /// ASCII console data (the VT220 console).
    pub const ASCII_CONSOLE: u8 = 0x1a;
    /// Signal quiesce.
    pub const SIGNAL_QUIESCE: u8 = 0x1d;
}

/// The bit that stands for event type `event_type` in a 4-byte event mask: bit 0 (the most
/// significant) is event type 1.
pub const fn event_mask(event_type: u8) -> u32 {
    1 << (32 - event_type as u32)
}

/// Function code of a normal write (WRITE EVENT DATA, WRITE EVENT MASK, READ SCP INFO).
pub const FUNCTION_CODE_NORMAL: u8 = 0;

/// Event buffer flag set by the SCLP when it accepted the buffer.
pub const EVENT_BUFFER_ACCEPTED: u8 = 0x80;

/// Size of one SCCB page: every request but READ SCP INFO fits it and must not cross it.
pub const SCCB_SIZE: usize = 4096;

/// Size of the extended-length SCCB for READ SCP INFO where the extended-length-SCCB
/// facility (STFLE bit 140) is installed: three pages, as Linux uses (`EXT_SCCB_READ_SCP`,
/// `arch/s390/boot/sclp_early_core.c`), enough for the CPU entries of 248 CPUs (QEMU's
/// maximum: 16 bytes each after the fixed part) that a single page cannot hold.
pub const EXTENDED_SCCB_SIZE: usize = 3 * SCCB_SIZE;

/// Control-mask byte 2 bit: the SCLP may answer an insufficient SCCB length with the length
/// it needs (extended-length-SCCB facility).
pub const VARIABLE_LENGTH_RESPONSE: u8 = 0x80;

/// Interruption-parameter bits that are not part of the SCCB address: bit 31 (value 1) says
/// "event pending", bit 30 is reserved.
pub const INTERRUPTION_PARAMETER_FLAGS: u32 = 0x3;

pub(crate) fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

pub(crate) fn be64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(word)
}

fn put16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

fn put32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

/// Converts a layout size to the u16 the length fields hold; every SCCB fits a 4 KiB page,
/// the extended READ SCP INFO SCCB three.
fn length16(length: usize) -> u16 {
    debug_assert!(
        length <= EXTENDED_SCCB_SIZE,
        "SCCB length {length} exceeds the extended SCCB"
    );
    length as u16
}

/// The 8-byte header every SCCB starts with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SccbHeader {
    /// Length of the whole SCCB in bytes, header included.
    pub length: u16,
    /// Function code (0 = normal write / unconditional read).
    pub function_code: u8,
    /// Control mask; byte 2 bit 0x80 requests a variable-length response.
    pub control_mask: [u8; 3],
    /// Response code, written by the SCLP.
    pub response_code: u16,
}

impl SccbHeader {
    /// Encoded size in bytes.
    pub const SIZE: usize = 2 + 1 + 3 + 2;

    /// A request header for an SCCB of `length` bytes with function code 0.
    pub fn request(length: usize) -> Self {
        Self {
            length: length16(length),
            ..Self::default()
        }
    }

    /// Reads the header from the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Self {
        Self {
            length: be16(bytes, 0),
            function_code: bytes[2],
            control_mask: [bytes[3], bytes[4], bytes[5]],
            response_code: be16(bytes, 6),
        }
    }

    /// Writes the header to the start of `bytes`.
    pub fn encode(&self, bytes: &mut [u8]) {
        put16(bytes, 0, self.length);
        bytes[2] = self.function_code;
        bytes[3..6].copy_from_slice(&self.control_mask);
        put16(bytes, 6, self.response_code);
    }
}

/// The 6-byte header of one event buffer inside a WRITE/READ EVENT DATA SCCB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventBufferHeader {
    /// Length of the event buffer, this header included.
    pub length: u16,
    /// Event type (see [`event_type`]).
    pub event_type: u8,
    /// Flags; the SCLP sets [`EVENT_BUFFER_ACCEPTED`].
    pub flags: u8,
}

impl EventBufferHeader {
    /// Encoded size in bytes (two reserved bytes follow the flags).
    pub const SIZE: usize = 2 + 1 + 1 + 2;

    /// Reads the header from the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Self {
        Self {
            length: be16(bytes, 0),
            event_type: bytes[2],
            flags: bytes[3],
        }
    }

    /// Writes the header (reserved bytes zero) to the start of `bytes`.
    pub fn encode(&self, bytes: &mut [u8]) {
        put16(bytes, 0, self.length);
        bytes[2] = self.event_type;
        bytes[3] = self.flags;
        put16(bytes, 4, 0);
    }
}

/// The complete WRITE EVENT MASK SCCB with 4-byte masks: 28 bytes.
///
/// The four masks follow each other in this order: ours (receive, send), then the SCLP's
/// (receive, send), as in Linux's `init_sccb` and QEMU's `WEM_*_MASK` macros. The SCLP's receive
/// mask, at byte 20, names the events it accepts from us, so it says which consoles exist.
/// Observed on QEMU 7.2 with both console devices: byte 20 = `0x40800040` (message, 0x09,
/// ASCII), byte 24 = `0x90800048` (operator command, 0x04, 0x09, ASCII, signal quiesce).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteEventMask {
    /// SCCB header.
    pub header: SccbHeader,
    /// Events we (the control program) want to receive.
    pub cp_receive_mask: u32,
    /// Events we will send.
    pub cp_send_mask: u32,
    /// Events the SCLP can receive from us, i.e. the consoles we may write to (filled in by the
    /// SCLP).
    pub sclp_receive_mask: u32,
    /// Events the SCLP can send to us (filled in by the SCLP).
    pub sclp_send_mask: u32,
}

impl WriteEventMask {
    /// Length of each mask in bytes.
    pub const MASK_LENGTH: u16 = 4;
    /// Encoded size: header, 2 reserved bytes, the mask length, four masks.
    pub const SIZE: usize = SccbHeader::SIZE + 2 + 2 + 4 * Self::MASK_LENGTH as usize;

    /// A request announcing `cp_receive_mask` and `cp_send_mask`.
    pub fn request(cp_receive_mask: u32, cp_send_mask: u32) -> Self {
        Self {
            header: SccbHeader::request(Self::SIZE),
            cp_receive_mask,
            cp_send_mask,
            ..Self::default()
        }
    }

    /// Reads the SCCB from the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Self {
        Self {
            header: SccbHeader::decode(bytes),
            cp_receive_mask: be32(bytes, 12),
            cp_send_mask: be32(bytes, 16),
            sclp_receive_mask: be32(bytes, 20),
            sclp_send_mask: be32(bytes, 24),
        }
    }

    /// Writes the SCCB to the start of `bytes`.
    pub fn encode(&self, bytes: &mut [u8]) {
        self.header.encode(bytes);
        put16(bytes, 8, 0);
        put16(bytes, 10, Self::MASK_LENGTH);
        put32(bytes, 12, self.cp_receive_mask);
        put32(bytes, 16, self.cp_send_mask);
        put32(bytes, 20, self.sclp_receive_mask);
        put32(bytes, 24, self.sclp_send_mask);
    }
}

/// Line-mode (message event) building blocks: MDB header, GO object, MTO object.
pub mod line_mode {
    use super::{put16, put32};

    /// Message data block header: `{u16 length; u16 type = 1; u32 tag; u32 revision}`.
    pub const MDB_HEADER_SIZE: usize = 2 + 2 + 4 + 4;
    /// MDB header type.
    pub const MDB_TYPE: u16 = 1;
    /// MDB tag: "MDB " in EBCDIC.
    pub const MDB_TAG: u32 = 0xD4C4_C240;
    /// MDB revision code.
    pub const MDB_REVISION: u32 = 1;

    /// General object: length, type, domain id, time, date, flags, names; all but the first
    /// two fields zero for our output.
    pub const GO_SIZE: usize = 2 + 2 + 4 + 8 + 3 + 1 + 7 + 1 + 2 + 10 + 8 + 8;
    /// Object type of the general object.
    pub const GO_TYPE: u16 = 1;

    /// Message text object header: `{u16 length; u16 type = 4; u16 line type flags; u8 alarm;
    /// u8 reserved[3]}`, followed by EBCDIC text.
    pub const MTO_HEADER_SIZE: usize = 2 + 2 + 2 + 1 + 3;
    /// Object type of the message text object.
    pub const MTO_TYPE: u16 = 4;
    /// Line type flag "end text".
    pub const LINE_TYPE_END_TEXT: u16 = 0x1000;

    /// Writes an MDB header covering `length` bytes (itself included).
    pub fn encode_mdb_header(bytes: &mut [u8], length: usize) {
        put16(bytes, 0, super::length16(length));
        put16(bytes, 2, MDB_TYPE);
        put32(bytes, 4, MDB_TAG);
        put32(bytes, 8, MDB_REVISION);
    }

    /// Writes a general object with only its length and type set.
    pub fn encode_go(bytes: &mut [u8]) {
        bytes[..GO_SIZE].fill(0);
        put16(bytes, 0, super::length16(GO_SIZE));
        put16(bytes, 2, GO_TYPE);
    }

    /// Writes an MTO header for `text_length` bytes of text that follow it.
    pub fn encode_mto_header(bytes: &mut [u8], text_length: usize) {
        put16(bytes, 0, super::length16(MTO_HEADER_SIZE + text_length));
        put16(bytes, 2, MTO_TYPE);
        put16(bytes, 4, LINE_TYPE_END_TEXT);
        bytes[6..MTO_HEADER_SIZE].fill(0);
    }
}

/// Field offsets of the READ SCP INFO response (kvm-unit-tests `ReadInfo`, Linux
/// `read_info_sccb`).
pub mod read_info {
    /// u16: highest storage increment number (0: use [`RNMAX2`]).
    pub const RNMAX: usize = 8;
    /// u8: storage increment size in MiB (0: use [`RNSIZE2`]).
    pub const RNSIZE: usize = 10;
    /// u16: number of CPU entries.
    pub const ENTRIES_CPU: usize = 16;
    /// u16: offset of the first CPU entry.
    pub const OFFSET_CPU: usize = 18;
    /// 8 bytes EBCDIC: load parameter.
    pub const LOADPARM: usize = 24;
    /// u64: SCLP facility bits.
    pub const FACILITIES: usize = 48;
    /// u32: storage increment size in MiB, when [`RNSIZE`] is 0.
    pub const RNSIZE2: usize = 100;
    /// u64: highest storage increment number, when [`RNMAX`] is 0.
    pub const RNMAX2: usize = 104;
    /// Size of one CPU entry.
    pub const CPU_ENTRY_SIZE: usize = 16;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_sizes_match_the_architecture() {
        assert_eq!(SccbHeader::SIZE, 8);
        assert_eq!(EventBufferHeader::SIZE, 6);
        assert_eq!(WriteEventMask::SIZE, 28);
        assert_eq!(line_mode::MDB_HEADER_SIZE, 12);
        assert_eq!(line_mode::GO_SIZE, 56);
        assert_eq!(line_mode::MTO_HEADER_SIZE, 10);
    }

    #[test]
    fn event_masks_follow_the_one_based_bit_numbering() {
        assert_eq!(event_mask(event_type::OPERATOR_COMMAND), 0x8000_0000);
        assert_eq!(event_mask(event_type::MESSAGE), 0x4000_0000);
        assert_eq!(event_mask(event_type::ASCII_CONSOLE), 0x0000_0040);
        assert_eq!(event_mask(event_type::SIGNAL_QUIESCE), 0x0000_0008);
    }

    #[test]
    fn write_event_mask_encodes_big_endian_and_round_trips() {
        let request = WriteEventMask {
            header: SccbHeader {
                response_code: 0x0020,
                ..SccbHeader::request(WriteEventMask::SIZE)
            },
            cp_receive_mask: 0x1122_3344,
            cp_send_mask: 0x4000_0040,
            sclp_receive_mask: 0x4000_0040,
            sclp_send_mask: 0x8000_0008,
        };
        let mut bytes = [0xAA; WriteEventMask::SIZE];
        request.encode(&mut bytes);
        assert_eq!(
            bytes,
            [
                0x00, 0x1C, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, // header
                0x00, 0x00, 0x00, 0x04, // reserved, mask length
                0x11, 0x22, 0x33, 0x44, 0x40, 0x00, 0x00, 0x40, // cp receive, cp send
                0x40, 0x00, 0x00, 0x40, 0x80, 0x00, 0x00, 0x08, // sclp receive, sclp send
            ]
        );
        assert_eq!(WriteEventMask::decode(&bytes), request);
    }

    #[test]
    fn event_buffer_header_clears_reserved_bytes() {
        let mut bytes = [0xFF; 6];
        EventBufferHeader {
            length: 0x0106,
            event_type: 0x1a,
            flags: 0,
        }
        .encode(&mut bytes);
        assert_eq!(bytes, [0x01, 0x06, 0x1a, 0x00, 0x00, 0x00]);
    }

    #[test]
    fn mto_header_counts_itself_in_its_length() {
        let mut bytes = [0xFF; 10];
        line_mode::encode_mto_header(&mut bytes, 5);
        assert_eq!(
            bytes,
            [0x00, 0x0F, 0x00, 0x04, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00]
        );
    }
}
