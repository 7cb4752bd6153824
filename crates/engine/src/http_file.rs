//! A response body read from a file (`Response::sendfile()`). The file is opened and its range
//! checked on the PHP thread, so a missing file is an exception where PHP called; the
//! connection's task then reads it 64 KiB at a time as the client takes it (Tokio runs the reads
//! on its blocking threads), so a large file never sits whole in memory.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};

/// How much of the file is read and written at a time.
const PIECE: u64 = 64 * 1024;

/// An open file, at the start of the range to send.
#[derive(Debug)]
pub struct FileToSend {
    file: File,
    length: u64,
    content_type: &'static str,
    modified: Option<SystemTime>,
}

/// Opens a file to read it. Non-blocking, so that a FIFO is refused (not a regular file) rather
/// than waited on for a writer that may never come; a regular file ignores the flag.
pub(crate) fn open_to_read(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

impl FileToSend {
    /// Opens `path` to send `length` bytes from `offset` (`length` 0: to the end of the file).
    /// Err says why not, for PHP's exception.
    pub fn open(path: &Path, offset: u64, length: u64) -> Result<Self, String> {
        let file =
            open_to_read(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Self::from_file(file, path, offset, length)
    }

    /// As `open`, with the file `path` already opened (by `open_to_read`).
    pub(crate) fn from_file(
        mut file: File,
        path: &Path,
        offset: u64,
        length: u64,
    ) -> Result<Self, String> {
        let shown = path.display();
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read {shown}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("{shown} is not a regular file"));
        }
        let size = meta.len();
        let length = match length {
            0 => size.saturating_sub(offset),
            n => n,
        };
        if offset.checked_add(length).is_none_or(|end| end > size) {
            return Err(format!(
                "{length} bytes from offset {offset} go past the end of {shown} ({size} bytes)"
            ));
        }
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| format!("cannot read {shown}: {e}"))?;
        let content_type = mime_guess::from_path(path)
            .first_raw()
            .unwrap_or("application/octet-stream");
        Ok(FileToSend {
            file,
            length,
            content_type,
            modified: meta.modified().ok(),
        })
    }

    /// The media type its name's extension says (`application/octet-stream` when none does).
    pub fn content_type(&self) -> &'static str {
        self.content_type
    }

    /// `length` bytes from `offset` of what this would send (the caller checked that they are
    /// inside it); None if the file cannot seek there.
    pub(crate) fn part(mut self, offset: u64, length: u64) -> Option<Self> {
        debug_assert!(offset + length <= self.length);
        self.file.seek(SeekFrom::Current(offset as i64)).ok()?;
        self.length = length;
        Some(self)
    }

    /// The bytes to send.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// When the file was last changed, if the file system says.
    pub fn modified(&self) -> Option<SystemTime> {
        self.modified
    }
}

/// The body hyper writes: the range, piece by piece; its exact length makes the Content-Length.
pub(crate) struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    /// The piece being read, kept while the read is pending.
    piece: Option<Vec<u8>>,
}

impl FileBody {
    pub(crate) fn new(to_send: FileToSend) -> Self {
        FileBody {
            file: tokio::fs::File::from_std(to_send.file),
            remaining: to_send.length,
            piece: None,
        }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        let want = this.remaining.min(PIECE) as usize;
        let piece = this.piece.get_or_insert_with(|| vec![0; want]);
        let mut buf = ReadBuf::new(piece);
        ready!(Pin::new(&mut this.file).poll_read(cx, &mut buf))?;
        let read = buf.filled().len();
        let mut piece = this.piece.take().unwrap_or_default();
        if read == 0 {
            // The Content-Length is promised: hyper ends the connection rather than lie.
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file got shorter while it was being sent",
            ))));
        }
        piece.truncate(read);
        this.remaining -= read as u64;
        Poll::Ready(Some(Ok(Frame::data(piece.into()))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn file_with(name: &str, content: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        (dir, path)
    }

    async fn body_of(to_send: FileToSend) -> Vec<u8> {
        let body = FileBody::new(to_send);
        body.collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn sends_the_range_asked_for_in_pieces() {
        let content: Vec<u8> = (0..200_000u32).map(|n| (n % 251) as u8).collect();
        let (_dir, path) = file_with("data.bin", &content);
        let whole = FileToSend::open(&path, 0, 0).unwrap();
        assert_eq!(whole.content_type(), "application/octet-stream");
        assert_eq!(body_of(whole).await, content);
        let tail = FileToSend::open(&path, 150_000, 0).unwrap();
        assert_eq!(body_of(tail).await, content[150_000..]);
        let middle = FileToSend::open(&path, 10, 100_000).unwrap();
        assert_eq!(body_of(middle).await, content[10..100_010]);
        let at_the_end = FileToSend::open(&path, 200_000, 0).unwrap();
        assert_eq!(body_of(at_the_end).await, b"");
    }

    #[test]
    fn refuses_what_cannot_be_sent() {
        let (dir, path) = file_with("page.html", b"<p>hi</p>");
        assert_eq!(
            FileToSend::open(&path, 0, 0).unwrap().content_type(),
            "text/html"
        );
        let past_the_end = FileToSend::open(&path, 5, 5).unwrap_err();
        assert!(past_the_end.contains("go past the end"), "{past_the_end}");
        assert!(FileToSend::open(&path, 10, 0).is_err());
        assert!(FileToSend::open(&path, u64::MAX, 2).is_err());
        let directory = FileToSend::open(dir.path(), 0, 0).unwrap_err();
        assert!(directory.contains("not a regular file"), "{directory}");
        let missing = FileToSend::open(&dir.path().join("missing.txt"), 0, 0).unwrap_err();
        assert!(missing.starts_with("cannot open"), "{missing}");
    }
}
