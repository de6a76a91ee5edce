//! Writing responses: status line, the layer's headers, compression, HEAD handling.

use super::cors::{CorsHeaders, EXPOSE_HEADERS};
use super::date;
use super::gzip::GzipPool;
use super::head::{list_items, trim_ows};
use super::message::Response;
use super::GZIP_MIN_BYTES;

/// How the layer must frame one response, decided from the request and the connection.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ResponseMeta<'a> {
    /// Answer to HEAD: headers as for GET, no body.
    pub(crate) head_request: bool,
    /// The connection closes after this response.
    pub(crate) close: bool,
    /// HTTP/1.0 client that asked for keep-alive and gets it.
    pub(crate) keep_alive_10: bool,
    /// The request's Accept-Encoding admits gzip.
    pub(crate) accepts_gzip: bool,
    /// A stream's body is chunked (HTTP/1.1); an HTTP/1.0 client's ends when the connection does.
    pub(crate) chunked: bool,
    pub(crate) cors: CorsHeaders<'a>,
}

/// Appends `resp` to `out` as an HTTP/1.1 response, compressing with `gzip` when worthwhile.
pub(crate) fn write_response(
    out: &mut Vec<u8>,
    resp: &Response,
    meta: &ResponseMeta<'_>,
    gzip: &GzipPool,
) {
    let status = if (100..=999).contains(&resp.status) {
        resp.status
    } else {
        500
    };
    let bodiless = status < 200 || status == 204 || status == 304;
    if resp.stream && !bodiless {
        return write_stream_head(out, status, resp, meta);
    }
    let compressible = !bodiless && resp.body.len() > GZIP_MIN_BYTES && !has_encoding(resp);
    let gzipped = if compressible && meta.accepts_gzip {
        gzip.compress(&resp.body)
    } else {
        None
    };
    let body: &[u8] = match (&gzipped, bodiless) {
        (_, true) => b"",
        (Some(z), false) => z,
        (None, false) => &resp.body,
    };
    write_status_line(out, status);
    write_fixed_headers(out, resp);
    if gzipped.is_some() {
        out.extend_from_slice(b"Content-Encoding: gzip\r\n");
    }
    write_vary(out, compressible, meta.cors.vary_origin);
    write_cors(out, &meta.cors);
    write_connection(out, meta);
    if !bodiless {
        write_content_length(out, body.len());
    }
    out.extend_from_slice(b"\r\n");
    if !meta.head_request {
        out.extend_from_slice(body);
    }
}

/// A stream's head and first bytes: no length, never compressed (each event must reach the
/// client as it is sent), chunked for HTTP/1.1.
fn write_stream_head(out: &mut Vec<u8>, status: u16, resp: &Response, meta: &ResponseMeta<'_>) {
    write_status_line(out, status);
    write_fixed_headers(out, resp);
    write_vary(out, false, meta.cors.vary_origin);
    write_cors(out, &meta.cors);
    write_connection(out, meta);
    if meta.chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if meta.head_request {
        return;
    }
    if meta.chunked {
        super::stream::write_chunk(out, &resp.body);
    } else {
        out.extend_from_slice(&resp.body);
    }
}

/// `HTTP/1.1 100 Continue`, sent before reading a body the client is holding back.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fn write_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    date::append_now(out);
    out.extend_from_slice(b"\r\n");
}

fn write_fixed_headers(out: &mut Vec<u8>, resp: &Response) {
    if let Some(ct) = resp.content_type {
        write_header(out, "Content-Type", ct.as_bytes());
    }
    for (name, value) in &resp.headers {
        write_header(out, name, value.as_bytes());
    }
}

fn write_vary(out: &mut Vec<u8>, accept_encoding: bool, origin: bool) {
    let value: &[u8] = match (accept_encoding, origin) {
        (true, true) => b"Accept-Encoding, Origin",
        (true, false) => b"Accept-Encoding",
        (false, true) => b"Origin",
        (false, false) => return,
    };
    write_header(out, "Vary", value);
}

fn write_cors(out: &mut Vec<u8>, cors: &CorsHeaders<'_>) {
    if let Some(origin) = cors.allow_origin {
        write_header(out, "Access-Control-Allow-Origin", origin);
        write_header(
            out,
            "Access-Control-Expose-Headers",
            EXPOSE_HEADERS.as_bytes(),
        );
    }
}

fn write_connection(out: &mut Vec<u8>, meta: &ResponseMeta<'_>) {
    if meta.close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if meta.keep_alive_10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
}

fn write_content_length(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes one header line; CR, LF and NUL in the value become spaces so a value cannot end the
/// line early.
fn write_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    if value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
        out.extend(value.iter().map(|&b| match b {
            b'\r' | b'\n' | 0 => b' ',
            b => b,
        }));
    } else {
        out.extend_from_slice(value);
    }
    out.extend_from_slice(b"\r\n");
}

fn has_encoding(resp: &Response) -> bool {
    resp.headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-encoding"))
}

/// Whether an `Accept-Encoding` list admits gzip: an explicit `gzip` (or `x-gzip`) entry decides
/// by its q-value, otherwise a `*` entry does; `q=0` refuses.
pub(crate) fn accepts_gzip<'a>(values: impl Iterator<Item = &'a [u8]>) -> bool {
    let (mut gzip, mut star) = (None, None);
    for value in values {
        for item in list_items(value) {
            let mut parts = item.split(|&b| b == b';');
            let coding = trim_ows(parts.next().unwrap_or_default());
            let q = parts.find_map(q_param).unwrap_or(Some(1000));
            if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
                gzip = merge_q(gzip, q);
            } else if coding == b"*" {
                star = merge_q(star, q);
            }
        }
    }
    gzip.or(star).is_some_and(|q| q > 0)
}

/// Keeps the best acceptable weight seen for a coding; an unparsable weight counts as refusal.
fn merge_q(prev: Option<u16>, q: Option<u16>) -> Option<u16> {
    Some(prev.unwrap_or(0).max(q.unwrap_or(0)))
}

/// The weight of a `q=` parameter in thousandths: `Some(Some(w))` for a valid one,
/// `Some(None)` for an invalid one, `None` for another parameter.
fn q_param(param: &[u8]) -> Option<Option<u16>> {
    let param = trim_ows(param);
    let (name, value) = param.split_at(param.iter().position(|&b| b == b'=')?);
    if !trim_ows(name).eq_ignore_ascii_case(b"q") {
        return None;
    }
    Some(parse_qvalue(trim_ows(&value[1..])))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` in thousandths.
fn parse_qvalue(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let thousandths = frac
        .iter()
        .chain(std::iter::repeat(&b'0'))
        .take(3)
        .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Reason phrases for the statuses Gavel sends; others get an empty phrase, which is valid.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
