//! gzip (RFC 1952) with compressors made once and reused.
//!
//! A deflate compressor holds a few hundred KiB of tables, and building one moves a 64 KiB
//! array through the stack several times in an unoptimised build. Doing that per response would
//! cost an allocation and a memset each time and could overflow a connection coroutine's stack,
//! so the server builds its compressors up front, on the thread that starts it, and lends them
//! out. Each worker has its own [`GzipPool`], used only by that worker's connections, so no pool
//! is shared across workers.

use std::sync::Mutex;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Magic, deflate, no flags, no mtime, no extra flags, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Room reserved in the output before each compression step.
const MIN_SPARE_BYTES: usize = 256;

/// A fixed set of reusable compressors, owned by one worker.
pub(crate) struct GzipPool {
    /// Per-worker lock: only the owning worker's connections take it, so it is contended within
    /// that worker at most, never between workers. They normally run one at a time on the
    /// worker's thread and compressing never yields, so it is usually free.
    idle: Mutex<Vec<Compress>>,
}

impl GzipPool {
    /// Builds `n` compressors now (fast level: responses are small and latency matters more than
    /// the last percent of size).
    pub(crate) fn new(n: usize) -> GzipPool {
        let compressors = (0..n)
            .map(|_| Compress::new(Compression::fast(), false))
            .collect();
        GzipPool {
            idle: Mutex::new(compressors),
        }
    }

    /// The gzip encoding of `body` if a compressor is free and the result is smaller; `None`
    /// means: send it as is.
    pub(crate) fn compress(&self, body: &[u8]) -> Option<Vec<u8>> {
        let mut compressor = self.idle.lock().ok()?.pop()?;
        let encoded = encode(&mut compressor, body);
        compressor.reset();
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(compressor);
        }
        encoded
    }
}

fn encode(compressor: &mut Compress, body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len() / 2 + HEADER.len() + MIN_SPARE_BYTES);
    out.extend_from_slice(&HEADER);
    loop {
        if out.len() >= body.len() {
            return None;
        }
        out.reserve(MIN_SPARE_BYTES);
        let (before_in, before_out) = (compressor.total_in(), compressor.total_out());
        let consumed = usize::try_from(before_in).ok()?;
        let status = compressor
            .compress_vec(&body[consumed..], &mut out, FlushCompress::Finish)
            .ok()?;
        if status == Status::StreamEnd {
            break;
        }
        if (before_in, before_out) == (compressor.total_in(), compressor.total_out()) {
            return None;
        }
    }
    let mut crc = Crc::new();
    crc.update(body);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    (out.len() < body.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut plain)
            .expect("valid gzip");
        plain
    }

    #[test]
    fn round_trips_and_reuses_compressors() {
        let pool = GzipPool::new(1);
        for round in 0..3 {
            let body = format!("round {round} ").repeat(500).into_bytes();
            let gz = pool.compress(&body).expect("compressible");
            assert!(gz.len() < body.len());
            assert_eq!(gunzip(&gz), body);
        }
    }

    #[test]
    fn large_bodies_need_several_steps() {
        let pool = GzipPool::new(1);
        let body: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let gz = pool.compress(&body).expect("compressible");
        assert_eq!(gunzip(&gz), body);
    }

    #[test]
    fn incompressible_bodies_are_left_alone() {
        let pool = GzipPool::new(1);
        let mut x = 1u32;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect();
        assert!(pool.compress(&noise).is_none());
        assert!(
            pool.compress(&[b'a'; 4096]).is_some(),
            "compressor returned"
        );
    }

    #[test]
    fn an_empty_pool_declines() {
        assert!(GzipPool::new(0).compress(&[b'a'; 4096]).is_none());
    }
}
