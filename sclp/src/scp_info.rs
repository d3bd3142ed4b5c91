//! READ SCP INFO: how much storage and how many CPUs the configuration has.

use crate::ebcdic::from_cp037;
use crate::spec::{
    EXTENDED_SCCB_SIZE, SCCB_SIZE, SccbHeader, VARIABLE_LENGTH_RESPONSE, be16, be32, be64, command,
    read_info, response,
};
use crate::{Backend, Error, Sclp};

const MIB: u64 = 1 << 20;

/// The parts of the READ SCP INFO answer the kernel uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScpInfo {
    /// Configured storage: highest increment number times increment size. It may include
    /// standby storage; probe (TPROT) before relying on the top.
    pub memory_bytes: u64,
    /// Size of one storage increment in bytes.
    pub increment_bytes: u64,
    /// Highest storage increment number.
    pub increments: u64,
    /// Number of CPUs in the configuration.
    pub cpus: u16,
    /// Offset of the first 16-byte CPU entry in the response.
    pub cpu_entries_offset: u16,
    /// The CPU addresses of the entries.
    pub cpu_addresses: crate::CpuAddresses,
    /// SCLP facility bits (response bytes 48-55).
    pub facilities: u64,
    /// The load parameter as stored, in EBCDIC.
    pub loadparm: [u8; 8],
}

impl ScpInfo {
    /// Parses a READ SCP INFO response. The increment fields fall back to their wide versions
    /// (rnmax2, rnsize2) when the narrow ones are 0, as on large machines.
    pub fn parse(bytes: &[u8; SCCB_SIZE]) -> Result<Self, Error> {
        let increments = match be16(bytes, read_info::RNMAX) {
            0 => be64(bytes, read_info::RNMAX2),
            rnmax => u64::from(rnmax),
        };
        let increment_mib = match bytes[read_info::RNSIZE] {
            0 => u64::from(be32(bytes, read_info::RNSIZE2)),
            rnsize => u64::from(rnsize),
        };
        let cpus = be16(bytes, read_info::ENTRIES_CPU);
        let increment_bytes = increment_mib.saturating_mul(MIB);
        if increments == 0 || increment_bytes == 0 || cpus == 0 {
            return Err(Error::InvalidScpInfo);
        }
        let mut loadparm = [0; 8];
        loadparm.copy_from_slice(&bytes[read_info::LOADPARM..read_info::LOADPARM + 8]);
        Ok(Self {
            memory_bytes: increments.saturating_mul(increment_bytes),
            increment_bytes,
            increments,
            cpus,
            cpu_entries_offset: be16(bytes, read_info::OFFSET_CPU),
            cpu_addresses: crate::CpuAddresses::parse(
                bytes,
                cpus,
                be16(bytes, read_info::OFFSET_CPU),
            ),
            facilities: be64(bytes, read_info::FACILITIES),
            loadparm,
        })
    }

    /// The load parameter translated to ASCII.
    pub fn loadparm_ascii(&self) -> [u8; 8] {
        self.loadparm.map(from_cp037)
    }
}

impl<B: Backend> Sclp<B> {
    /// READ SCP INFO in a one-page SCCB; see [`Sclp::read_scp_info_with`].
    pub fn read_scp_info(&mut self) -> Result<ScpInfo, Error> {
        self.read_scp_info_with(false)
    }

    /// READ SCP INFO (forced first, as Linux does, then the plain command if the SCLP does not
    /// know the forced one). With `extended_length` (the extended-length-SCCB facility, STFLE
    /// bit 140, is installed) the SCCB is [`EXTENDED_SCCB_SIZE`] long and asks for a
    /// variable-length response, so the CPU entries of a large configuration fit; without it
    /// one page, and a configuration whose CPU entries do not fit answers
    /// [`response::INSUFFICIENT_SCCB_LENGTH`] (QEMU: more than about 240 CPUs), which the
    /// caller must handle without this information.
    pub fn read_scp_info_with(&mut self, extended_length: bool) -> Result<ScpInfo, Error> {
        let mut code = response::INVALID_COMMAND;
        for command in [command::READ_SCP_INFO_FORCED, command::READ_SCP_INFO] {
            let header = if extended_length {
                self.sccb.clear_extended();
                SccbHeader {
                    control_mask: [0, 0, VARIABLE_LENGTH_RESPONSE],
                    ..SccbHeader::request(EXTENDED_SCCB_SIZE)
                }
            } else {
                self.sccb.clear();
                SccbHeader::request(SCCB_SIZE)
            };
            header.encode(self.sccb.as_bytes_mut());
            code = self.execute(command)?;
            match code {
                response::NORMAL_READ_COMPLETION => return ScpInfo::parse(self.sccb.as_bytes()),
                response::INVALID_COMMAND => continue,
                _ => break,
            }
        }
        Err(Error::Response(code))
    }
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use super::*;
    use crate::fake::{Config, sclp};

    /// A READ SCP INFO answer page built from literal offsets.
    fn answer(rnmax: u16, rnsize: u8, rnmax2: u64, rnsize2: u32, cpus: u16) -> Vec<u8> {
        let mut page = std::vec![0; 4096];
        page[0..2].copy_from_slice(&4096u16.to_be_bytes());
        page[8..10].copy_from_slice(&rnmax.to_be_bytes());
        page[10] = rnsize;
        page[16..18].copy_from_slice(&cpus.to_be_bytes());
        page[18..20].copy_from_slice(&128u16.to_be_bytes());
        page[24..32].copy_from_slice(&[0xE9, 0xC8, 0xC9, 0xD5, 0xE3, 0x40, 0x40, 0x40]); // "ZHINT   "
        page[48..56].copy_from_slice(&0x8000_0000_0000_0001u64.to_be_bytes());
        page[100..104].copy_from_slice(&rnsize2.to_be_bytes());
        page[104..112].copy_from_slice(&rnmax2.to_be_bytes());
        page
    }

    fn page(bytes: Vec<u8>) -> [u8; SCCB_SIZE] {
        bytes.try_into().unwrap()
    }

    #[test]
    fn parse_takes_memory_from_increments_and_cpus_from_the_entry_count() {
        let info = ScpInfo::parse(&page(answer(256, 16, 0, 0, 2))).unwrap();
        assert_eq!(info.memory_bytes, 4 << 30);
        assert_eq!(info.increment_bytes, 16 << 20);
        assert_eq!(info.increments, 256);
        assert_eq!(info.cpus, 2);
        assert_eq!(info.cpu_entries_offset, 128);
        // Both entries of the answer page are zero-filled: address 0 twice.
        assert_eq!(info.cpu_addresses.iter().collect::<Vec<_>>(), [0]);
        assert_eq!(info.facilities, 0x8000_0000_0000_0001);
        assert_eq!(&info.loadparm_ascii(), b"ZHINT   ");
    }

    #[test]
    fn parse_falls_back_to_the_wide_increment_fields() {
        let info = ScpInfo::parse(&page(answer(0, 0, 0x1_0000, 256, 8))).unwrap();
        assert_eq!(info.memory_bytes, 0x1_0000 * (256 << 20));
        assert_eq!(info.cpus, 8);
        // Only the field that is 0 is replaced.
        let info = ScpInfo::parse(&page(answer(1024, 0, 7, 2, 1))).unwrap();
        assert_eq!(info.memory_bytes, 2 << 30);
    }

    #[test]
    fn parse_rejects_an_answer_without_storage_or_cpus() {
        assert_eq!(
            ScpInfo::parse(&page(answer(0, 16, 0, 0, 1))),
            Err(Error::InvalidScpInfo)
        );
        assert_eq!(
            ScpInfo::parse(&page(answer(16, 0, 0, 0, 1))),
            Err(Error::InvalidScpInfo)
        );
        assert_eq!(
            ScpInfo::parse(&page(answer(16, 16, 0, 0, 0))),
            Err(Error::InvalidScpInfo)
        );
    }

    #[test]
    fn read_scp_info_sends_a_full_zeroed_page_with_the_forced_command() {
        let mut sclp = sclp(Config {
            read_info: answer(512, 1, 0, 0, 1),
            ..Config::default()
        });
        let info = sclp.read_scp_info().unwrap();
        assert_eq!(info.memory_bytes, 512 << 20);
        let requests = &sclp.backend.requests;
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].command, 0x0012_0001);
        let mut expected = std::vec![0; 4096];
        expected[0..2].copy_from_slice(&[0x10, 0x00]);
        assert_eq!(requests[0].bytes, expected);
    }

    #[test]
    fn read_scp_info_falls_back_to_the_normal_command() {
        let config = Config {
            forced_read_info: false,
            read_info: answer(128, 8, 0, 0, 4),
            ..Config::default()
        };
        let mut sclp = sclp(config);
        let info = sclp.read_scp_info().unwrap();
        assert_eq!((info.memory_bytes, info.cpus), (1 << 30, 4));
        let commands: Vec<u32> = sclp.backend.requests.iter().map(|r| r.command).collect();
        assert_eq!(commands, [0x0012_0001, 0x0002_0001]);
    }

    #[test]
    fn read_scp_info_reports_error_responses_without_a_second_try() {
        let mut sclp = sclp(Config {
            read_info_response: 0x0300,
            ..Config::default()
        });
        assert_eq!(sclp.read_scp_info(), Err(Error::Response(0x0300)));
        assert_eq!(sclp.backend.requests.len(), 1);
    }

    #[test]
    fn read_scp_info_fails_when_neither_command_is_known() {
        let config = Config {
            forced_read_info: false,
            read_info_response: 0x01f0,
            ..Config::default()
        };
        let mut sclp = sclp(config);
        assert_eq!(sclp.read_scp_info(), Err(Error::Response(0x01f0)));
        assert_eq!(sclp.backend.requests.len(), 2);
    }

    /// QEMU with 248 CPUs: 16 bytes per CPU entry do not fit one page. With the
    /// extended-length-SCCB facility a three-page SCCB asking for a variable-length
    /// response gets the answer; without it the one-page request answers 0x0300 and the
    /// caller falls back.
    #[test]
    fn many_cpus_need_the_extended_length_sccb() {
        // The fixed part of QEMU's `ReadInfo` is 144 bytes with the extended-length facility.
        let required = 144 + 248 * 16;
        let config = Config {
            read_info: answer(256, 1, 0, 0, 248),
            read_info_required: required,
            extended_length: true,
            ..Config::default()
        };
        let mut sclp = sclp(config.clone());
        let info = sclp.read_scp_info_with(true).unwrap();
        assert_eq!((info.memory_bytes, info.cpus), (256 << 20, 248));
        let request = &sclp.backend.requests[0];
        assert_eq!(request.bytes.len(), 3 * 4096);
        assert_eq!(&request.bytes[0..8], &[0x30, 0x00, 0, 0, 0, 0x80, 0, 0]);
        let mut sclp = self::sclp(config.clone());
        assert_eq!(sclp.read_scp_info(), Err(Error::Response(0x0300)));
        let without = Config {
            extended_length: false,
            ..config
        };
        let mut sclp = self::sclp(without);
        assert_eq!(sclp.read_scp_info(), Err(Error::Response(0x0300)));
        assert_eq!(sclp.read_scp_info_with(true), Err(Error::Response(0x0100)));
    }

    #[test]
    fn read_scp_info_waits_out_busy() {
        let config = Config {
            busy_calls: 3,
            read_info: answer(1, 1, 0, 0, 1),
            ..Config::default()
        };
        let mut sclp = sclp(config);
        assert_eq!(sclp.read_scp_info().map(|i| i.memory_bytes), Ok(1 << 20));
    }
}
