//! Reading a secret that an administrator pipes in, for the command-line
//! tools (`authtoken login`, `authtoken-server add-user`).

use std::io::Read;

use zeroize::Zeroizing;

/// The first line of `input` (without `\n` or `\r\n`), reading at most
/// `max` bytes, into a zeroizing buffer allocated once at its final size.
pub fn first_line(input: impl Read, max: usize) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut line = Zeroizing::new(Vec::with_capacity(max + 1));
    input.take(max as u64).read_to_end(&mut line)?;
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    line.truncate(end);
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_first_line_only() {
        let line = |input: &[u8]| first_line(input, 16).unwrap().to_vec();
        assert_eq!(line(b"pw\nrest"), b"pw");
        assert_eq!(line(b"pw\r\n"), b"pw");
        assert_eq!(line(b"no newline"), b"no newline");
        assert_eq!(line(b""), b"");
        assert_eq!(first_line(&[b'a'; 40][..], 16).unwrap().len(), 16);
    }
}
