//! Logs and traces. Structured logs go to stderr (text or JSON); when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans are also exported over OTLP
//! gRPC. The returned guard flushes the exporter on shutdown.

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{Config, LogFormat};

/// Keeps the span exporter alive; call [`Telemetry::shutdown`] last.
#[must_use = "dropping the guard without shutdown loses buffered spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the global subscriber. Must run inside the Tokio runtime,
    /// which the OTLP exporter uses.
    pub fn init(config: &Config) -> anyhow::Result<Self> {
        let filter = EnvFilter::try_new(&config.log_filter)
            .with_context(|| format!("log filter '{}' is not valid", config.log_filter))?;
        let provider = match &config.otlp_endpoint {
            Some(endpoint) => {
                let exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint.clone())
                    .build()
                    .context("building the OTLP span exporter")?;
                Some(
                    SdkTracerProvider::builder()
                        .with_batch_exporter(exporter)
                        .with_resource(
                            opentelemetry_sdk::Resource::builder()
                                .with_service_name(config.service_name.clone())
                                .build(),
                        )
                        .build(),
                )
            }
            None => None,
        };
        let otel_layer = provider.as_ref().map(|provider| {
            tracing_opentelemetry::layer().with_tracer(provider.tracer("boxoffice"))
        });
        let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
        let result = match config.log_format {
            LogFormat::Text => registry
                .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
                .try_init(),
            LogFormat::Json => registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .with_writer(std::io::stderr),
                )
                .try_init(),
        };
        // A second init (tests, embedded use) keeps the first subscriber.
        if result.is_err() {
            tracing::debug!("a tracing subscriber was already installed");
        }
        if let Some(provider) = &provider {
            opentelemetry::global::set_tracer_provider(provider.clone());
            tracing::info!(
                endpoint = config.otlp_endpoint.as_deref().unwrap_or_default(),
                "exporting traces over OTLP"
            );
        }
        Ok(Self { provider })
    }

    /// Flushes buffered spans.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("flushing telemetry failed: {error}");
        }
    }
}
