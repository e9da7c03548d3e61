//! The grpc probe: one `grpc.health.v1.Health/Check` call over cleartext HTTP/2 (prior
//! knowledge, as kubelet's probe), written by hand: the probe needs one request and the status
//! of one reply, not an HTTP/2 client. The request's headers are HPACK literals (no Huffman,
//! no dynamic table); the reply's headers are not decoded: the verdict comes from the
//! HealthCheckResponse message, and a reply without one (trailers only: an error status) is a
//! failure.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
/// The stream of the one call.
const STREAM: u32 = 1;
/// Frames larger than the default SETTINGS_MAX_FRAME_SIZE are refused.
const MAX_FRAME: usize = 16_384;
/// A health reply is a few bytes; anything beyond this is not one.
const MAX_MESSAGE: usize = 4096;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = Vec::with_capacity(9 + len);
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK string literal, not Huffman-coded (7-bit prefix integer length).
fn hpack_string(out: &mut Vec<u8>, text: &str) {
    hpack_integer(out, 0, 7, text.len());
    out.extend_from_slice(text.as_bytes());
}

fn hpack_integer(out: &mut Vec<u8>, high: u8, prefix: u32, mut value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

/// The request's header block: POST, http, the Check path, the authority, gRPC's content
/// type and `te: trailers`.
pub fn request_headers(authority: &str) -> Vec<u8> {
    let mut out = vec![0x83, 0x86]; // :method POST, :scheme http (static table 3 and 6)
                                    // :path (static 4) and :authority (static 1), literal values without indexing.
    out.push(0x04);
    hpack_string(&mut out, "/grpc.health.v1.Health/Check");
    out.push(0x01);
    hpack_string(&mut out, authority);
    for (name, value) in [
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("user-agent", "kube-probe/1.35"),
    ] {
        out.push(0x00);
        hpack_string(&mut out, name);
        hpack_string(&mut out, value);
    }
    out
}

/// A HealthCheckRequest { service } as a gRPC message (uncompressed, length-prefixed).
pub fn request_message(service: &str) -> Vec<u8> {
    let mut body = Vec::new();
    if !service.is_empty() {
        body.push(0x0a); // field 1, length-delimited
        let mut len = service.len();
        while len >= 128 {
            body.push((len % 128 + 128) as u8);
            len /= 128;
        }
        body.push(len as u8);
        body.extend_from_slice(service.as_bytes());
    }
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The serving status of a gRPC message holding a HealthCheckResponse: 0 UNKNOWN, 1 SERVING,
/// 2 NOT_SERVING, 3 SERVICE_UNKNOWN.
pub fn response_status(message: &[u8]) -> Result<u64, String> {
    if message.len() < 5 {
        return Err("a truncated gRPC message".into());
    }
    if message[0] != 0 {
        return Err("a compressed gRPC message".into());
    }
    let len = u32::from_be_bytes([message[1], message[2], message[3], message[4]]) as usize;
    let body = message
        .get(5..5 + len)
        .ok_or_else(|| "a truncated gRPC message".to_string())?;
    // Field 1 (varint) is the status; anything else is skipped. Absent: 0 (UNKNOWN).
    let mut at = 0;
    let mut status = 0;
    let varint = |at: &mut usize| -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *body
                .get(*at)
                .ok_or_else(|| "a malformed HealthCheckResponse".to_string())?;
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err("a malformed HealthCheckResponse".into())
    };
    while at < body.len() {
        let key = varint(&mut at)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = varint(&mut at)?,
            (_, 0) => {
                varint(&mut at)?;
            }
            (_, 2) => {
                let len = usize::try_from(varint(&mut at)?).unwrap_or(usize::MAX);
                at = at.saturating_add(len);
            }
            (_, 1) => at += 8,
            (_, 5) => at += 4,
            _ => return Err("a malformed HealthCheckResponse".into()),
        }
    }
    Ok(status)
}

fn status_name(status: u64) -> String {
    match status {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        n => n.to_string(),
    }
}

/// One health check on `stream`; Ok(None): SERVING, Ok(Some(why)): not.
pub async fn check<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    authority: &str,
    service: &str,
) -> std::io::Result<Option<String>> {
    let mut request = PREFACE.to_vec();
    request.extend(frame(SETTINGS, 0, 0, &[]));
    request.extend(frame(
        HEADERS,
        END_HEADERS,
        STREAM,
        &request_headers(authority),
    ));
    request.extend(frame(DATA, END_STREAM, STREAM, &request_message(service)));
    stream.write_all(&request).await?;
    stream.flush().await?;
    let mut message = Vec::new();
    loop {
        let mut head = [0u8; 9];
        if let Err(e) = stream.read_exact(&mut head).await {
            return Err(std::io::Error::new(
                e.kind(),
                "the server closed the connection before answering",
            ));
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if len > MAX_FRAME {
            return Err(invalid("a frame larger than HTTP/2 allows by default"));
        }
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await?;
        match kind {
            SETTINGS if flags & ACK == 0 => {
                stream.write_all(&frame(SETTINGS, ACK, 0, &[])).await?;
            }
            PING if flags & ACK == 0 => {
                stream.write_all(&frame(PING, ACK, 0, &payload)).await?;
            }
            GOAWAY => return Err(invalid("the server ended the connection (GOAWAY)")),
            RST_STREAM if id == STREAM => {
                return Err(invalid("the server reset the call (RST_STREAM)"))
            }
            DATA if id == STREAM => {
                let padded = flags & 0x8 != 0;
                let data = if padded {
                    let pad = usize::from(*payload.first().unwrap_or(&0));
                    payload
                        .get(1..payload.len().saturating_sub(pad))
                        .unwrap_or(&[])
                } else {
                    &payload[..]
                };
                message.extend_from_slice(data);
                if message.len() > MAX_MESSAGE {
                    return Err(invalid("a reply too large for a health check"));
                }
                if message.len() >= 5 {
                    let want = u32::from_be_bytes([message[1], message[2], message[3], message[4]])
                        as usize;
                    if message.len() >= 5 + want {
                        let status = response_status(&message).map_err(|e| invalid(&e))?;
                        return Ok((status != 1).then(|| {
                            format!(
                                "service unhealthy (responded with {:?})",
                                status_name(status)
                            )
                        }));
                    }
                }
                if flags & END_STREAM != 0 {
                    return Err(invalid("the reply ended inside its message"));
                }
            }
            HEADERS if id == STREAM && flags & END_STREAM != 0 => {
                // Trailers without a message: the call failed (its grpc-status is in the
                // HPACK-coded trailers, not decoded here).
                return Ok(Some(
                    "rpc error: the call ended without a HealthCheckResponse (is grpc.health.v1.Health served?)"
                        .into(),
                ));
            }
            _ => {}
        }
    }
}

fn invalid(message: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_strings_follow_hpack() {
        let mut out = Vec::new();
        hpack_integer(&mut out, 0, 5, 10);
        assert_eq!(out, [10]);
        // RFC 7541 C.1.2: 1337 with a 5-bit prefix.
        let mut out = Vec::new();
        hpack_integer(&mut out, 0, 5, 1337);
        assert_eq!(out, [31, 154, 10]);
        let mut out = Vec::new();
        hpack_string(&mut out, "te");
        assert_eq!(out, [2, b't', b'e']);
        let headers = request_headers("10.0.0.5:9000");
        assert_eq!(&headers[..3], &[0x83, 0x86, 0x04]);
    }

    #[test]
    fn messages_encode_and_decode() {
        assert_eq!(request_message(""), [0, 0, 0, 0, 0]);
        assert_eq!(request_message("db"), [0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']);
        assert_eq!(response_status(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(1));
        assert_eq!(response_status(&[0, 0, 0, 0, 2, 0x08, 2]), Ok(2));
        assert_eq!(response_status(&[0, 0, 0, 0, 0]), Ok(0));
        assert!(response_status(&[0, 0, 0, 0, 9, 0x08]).is_err());
        assert!(response_status(&[1, 0, 0, 0, 0]).is_err());
    }

    /// The server side of one call: its settings, headers, then `data` and trailers.
    async fn serve(mut server: tokio::io::DuplexStream, data: Option<Vec<u8>>) -> Vec<u8> {
        let mut preface = vec![0u8; PREFACE.len()];
        server.read_exact(&mut preface).await.expect("preface");
        let mut reply = frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
        reply.extend(frame(HEADERS, END_HEADERS, STREAM, &[0x88])); // :status 200
        match data {
            Some(d) => {
                reply.extend(frame(DATA, 0, STREAM, &d));
                reply.extend(frame(HEADERS, END_HEADERS | END_STREAM, STREAM, &[0x40]));
            }
            None => reply.extend(frame(HEADERS, END_HEADERS | END_STREAM, STREAM, &[0x40])),
        }
        server.write_all(&reply).await.expect("reply");
        let mut seen = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            server.read_to_end(&mut seen),
        )
        .await;
        seen
    }

    #[tokio::test]
    async fn serving_not_serving_and_no_message() {
        for (data, expected) in [
            (Some(vec![0, 0, 0, 0, 2, 0x08, 1]), None),
            (
                Some(vec![0, 0, 0, 0, 2, 0x08, 2]),
                Some("service unhealthy (responded with \"NOT_SERVING\")".to_string()),
            ),
        ] {
            let (client, server) = tokio::io::duplex(64 * 1024);
            let served = tokio::spawn(serve(server, data));
            let got = check(client, "10.0.0.5:9000", "").await.expect("a reply");
            assert_eq!(got, expected);
            let seen = served.await.expect("the server");
            // The client acknowledged the server's settings.
            assert!(seen
                .windows(9)
                .any(|w| w == frame(SETTINGS, ACK, 0, &[]).as_slice()));
        }
        let (client, server) = tokio::io::duplex(64 * 1024);
        let served = tokio::spawn(serve(server, None));
        let got = check(client, "10.0.0.5:9000", "").await.expect("a reply");
        assert!(got.is_some_and(|w| w.starts_with("rpc error")));
        served.await.expect("the server");
    }
}
