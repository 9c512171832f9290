//! The protobuf codec every generated client and server uses: prost's, with
//! one change. A message that does not decode (garbage bytes, invalid UTF-8
//! in a string, a wrong wire type) fails with an `ErrorInfo` reason,
//! [`MALFORMED_MESSAGE`], instead of prost's bare `INTERNAL`, so that a
//! server can tell a request it could not read (the caller's mistake,
//! `INVALID_ARGUMENT`: `boxoffice_runtime::wire` turns it into one) from any
//! other internal failure. The code stays `INTERNAL` here because the same
//! codec reads answers on the client side, where an unreadable answer is
//! the server's fault, not the caller's.

use std::collections::HashMap;
use std::marker::PhantomData;

use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_types::{ErrorDetails, StatusExt as _};

/// `ErrorInfo.domain` of every boxoffice error.
pub const ERROR_DOMAIN: &str = "boxoffice.dev";

/// `ErrorInfo.reason` of a message that could not be decoded.
pub const MALFORMED_MESSAGE: &str = "MALFORMED_MESSAGE";

/// A status for a message that could not be read, with its reason.
pub fn malformed(code: tonic::Code, message: impl Into<String>) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(MALFORMED_MESSAGE, ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(code, message, details)
}

/// prost's codec, with decode failures marked [`MALFORMED_MESSAGE`].
#[derive(Debug, Clone)]
pub struct ProstCodec<T, U> {
    inner: tonic_prost::ProstCodec<T, U>,
    _messages: PhantomData<(T, U)>,
}

impl<T, U> Default for ProstCodec<T, U> {
    fn default() -> Self {
        Self {
            inner: tonic_prost::ProstCodec::default(),
            _messages: PhantomData,
        }
    }
}

impl<T, U> Codec for ProstCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = MarkedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        MarkedDecoder(self.inner.decoder())
    }
}

/// prost's decoder whose failures carry [`MALFORMED_MESSAGE`].
#[derive(Debug, Clone)]
pub struct MarkedDecoder<U>(tonic_prost::ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for MarkedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0
            .decode(buf)
            .map_err(|status| malformed(status.code(), status.message()))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
