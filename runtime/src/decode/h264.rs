//! Which coded frames no other frame refers to, read from the packets
//! before they reach the decoder. Such a frame can be dropped unseen when
//! no clip samples it, and the frames around it still decode bit for bit:
//! in H.264 a picture whose slices all have `nal_ref_idc == 0` is never
//! used for prediction, and frame numbering (`frame_num`, picture order
//! counts) only advances on reference pictures.

/// How a stream's packets frame their NAL units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum H264Framing {
    /// `stream-format=avc`: each NAL unit after a big-endian length of
    /// this many bytes (from the `avcC` record).
    Avc { length_size: usize },
    /// `stream-format=byte-stream`: NAL units after 00 00 01 start codes.
    ByteStream,
}

impl H264Framing {
    /// From a stream's caps; `None` when they are not H.264 or say nothing
    /// usable.
    pub fn from_caps(caps: &gst::CapsRef) -> Option<H264Framing> {
        let s = caps.structure(0)?;
        if s.name() != "video/x-h264" {
            return None;
        }
        match s.get::<&str>("stream-format").ok()? {
            "avc" | "avc3" => {
                let record = s.get::<gst::Buffer>("codec_data").ok()?;
                let map = record.map_readable().ok()?;
                // avcC: version, profile, compatibility, level, then
                // `lengthSizeMinusOne` in the low two bits.
                let length_size = (*map.get(4)? & 3) as usize + 1;
                (length_size != 3).then_some(H264Framing::Avc { length_size })
            }
            "byte-stream" => Some(H264Framing::ByteStream),
            _ => None,
        }
    }

    /// Whether the access unit in `packet` holds slices and none of them is
    /// a reference. Anything unreadable counts as a reference.
    pub fn droppable(&self, packet: &[u8]) -> bool {
        let mut slices = 0;
        let mut reference = false;
        let readable = self.each_nal(packet, |nal| {
            let kind = nal[0] & 0x1f;
            // 1: non-IDR slice, 2-4: data partitions, 5: IDR slice.
            if (1..=5).contains(&kind) {
                slices += 1;
                reference |= nal[0] & 0x60 != 0 || kind == 5;
            }
        });
        readable && slices > 0 && !reference
    }

    /// Whether decoding can start at the access unit in `packet`: an IDR
    /// picture, or a recovery point (SEI payload 6, as open-GOP streams
    /// mark their I-frames). An I-frame without either is no such point:
    /// the P-frames after it may refer to pictures before it.
    pub fn random_access(&self, packet: &[u8]) -> bool {
        let mut found = false;
        self.each_nal(packet, |nal| found |= nal[0] & 0x1f == 5 || (nal[0] & 0x1f == 6 && has_recovery_point(&nal[1..])));
        found
    }

    /// Calls `visit` with each NAL unit (header byte first) of `packet`;
    /// false when the packet does not parse.
    fn each_nal(&self, packet: &[u8], mut visit: impl FnMut(&[u8])) -> bool {
        match *self {
            H264Framing::Avc { length_size } => {
                let mut at = 0;
                while at + length_size < packet.len() {
                    let len = packet[at..at + length_size].iter().fold(0usize, |n, &b| n << 8 | b as usize);
                    if len == 0 || at + length_size + len > packet.len() {
                        return false;
                    }
                    visit(&packet[at + length_size..at + length_size + len]);
                    at += length_size + len;
                }
                at == packet.len()
            }
            H264Framing::ByteStream => {
                // Each unit runs to the next start code (less the zero byte
                // a four-byte start code puts before it) or the packet's end.
                let mut unit = |start: usize, end: usize| {
                    let end = if end > start && end < packet.len() && packet[end - 1] == 0 { end - 1 } else { end };
                    if end > start {
                        visit(&packet[start..end]);
                    }
                };
                let mut open = None;
                for w in 0..packet.len().saturating_sub(3) {
                    if packet[w..w + 3] == [0, 0, 1]
                        && let Some(start) = open.replace(w + 3)
                    {
                        unit(start, w);
                    }
                }
                if let Some(start) = open {
                    unit(start, packet.len());
                }
                true
            }
        }
    }
}

/// Whether SEI messages (`payloadType`, `payloadSize`, payload, ...) hold a
/// recovery point (type 6). Sizes are read as written: emulation
/// prevention bytes inside a payload can only end the walk early.
fn has_recovery_point(sei: &[u8]) -> bool {
    let mut at = 0;
    let read = |at: &mut usize| {
        let mut value = 0usize;
        while let Some(&b) = sei.get(*at) {
            *at += 1;
            value += b as usize;
            if b != 0xff {
                return Some(value);
            }
        }
        None
    };
    while sei.get(at).is_some_and(|&b| b != 0x80) {
        let (Some(kind), Some(size)) = (read(&mut at), read(&mut at)) else { return false };
        if kind == 6 {
            return true;
        }
        at += size;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A length-prefixed NAL unit with this header byte and a short body.
    fn nal(header: u8) -> Vec<u8> {
        vec![0, 0, 0, 3, header, 0x88, 0x84]
    }

    #[test]
    fn avc_non_reference_slices_are_droppable() {
        let avc = H264Framing::Avc { length_size: 4 };
        // A B-slice with nal_ref_idc 0 after an access unit delimiter (9)
        // and SEI (6), which say nothing about references.
        let b = [nal(0x09), nal(0x06), nal(0x01)].concat();
        assert!(avc.droppable(&b));
        // nal_ref_idc 2 (0x41), an IDR (0x65), a second slice that is a
        // reference: kept.
        assert!(!avc.droppable(&nal(0x41)));
        assert!(!avc.droppable(&nal(0x65)));
        assert!(!avc.droppable(&[nal(0x01), nal(0x21)].concat()));
        // No slice at all, or a length running past the packet: kept.
        assert!(!avc.droppable(&nal(0x06)));
        assert!(!avc.droppable(&[0, 0, 0, 9, 0x01, 0x88]));
        assert!(!avc.droppable(&[]));
    }

    #[test]
    fn two_byte_lengths_and_byte_streams() {
        let avc = H264Framing::Avc { length_size: 2 };
        assert!(avc.droppable(&[0, 2, 0x01, 0x9a, 0, 1, 0x0c]));
        assert!(!avc.droppable(&[0, 2, 0x41, 0x9a]));
        let annex_b = H264Framing::ByteStream;
        assert!(annex_b.droppable(&[0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x01, 0x9e, 0x12]));
        assert!(!annex_b.droppable(&[0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x21, 0x9e, 0x12]));
    }

    #[test]
    fn decoding_starts_at_idr_pictures_and_recovery_points() {
        let avc = H264Framing::Avc { length_size: 4 };
        // IDR slice; a non-IDR I-slice alone; after an SEI holding user
        // data (5) then a recovery point (6).
        assert!(avc.random_access(&[nal(0x09), nal(0x65)].concat()));
        assert!(!avc.random_access(&nal(0x41)));
        let sei = vec![0, 0, 0, 9, 0x06, 0x05, 0x02, 0xaa, 0xbb, 0x06, 0x01, 0x84, 0x80];
        assert!(avc.random_access(&[sei.clone(), nal(0x41)].concat()));
        let no_recovery = vec![0, 0, 0, 6, 0x06, 0x05, 0x02, 0xaa, 0xbb, 0x80];
        assert!(!avc.random_access(&[no_recovery, nal(0x41)].concat()));
        let annex_b = H264Framing::ByteStream;
        assert!(annex_b.random_access(&[0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x65, 0x88, 0x84]));
        assert!(!annex_b.random_access(&[0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x41, 0x9a, 0x12]));
    }
}
