//! gRPC server reflection (ProxyTCK 2), over a hand-written client of
//! `grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo`.

use std::collections::BTreeSet;

use futures_util::StreamExt;
use http::uri::PathAndQuery;
use prost::Message;
use tonic::transport::Channel;

use super::{Case, CaseResult, Ctx};
use crate::Error;
use crate::error::{CheckExt, ensure, ensure_eq};
use crate::proto::service::EVENT_SOURCED;
use crate::relay::PATIENCE;

/// The messages of `grpc/reflection/v1alpha/reflection.proto` the cases use (the same wire
/// format as `v1`).
mod wire {
    /// `ServerReflectionRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(string, tag = "1")]
        pub host: String,
        #[prost(oneof = "Query", tags = "3, 4, 7")]
        pub query: Option<Query>,
    }

    /// `ServerReflectionRequest.message_request`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Query {
        #[prost(string, tag = "3")]
        FileByFilename(String),
        #[prost(string, tag = "4")]
        FileContainingSymbol(String),
        #[prost(string, tag = "7")]
        ListServices(String),
    }

    /// `ServerReflectionResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Response {
        #[prost(string, tag = "1")]
        pub valid_host: String,
        #[prost(oneof = "Answer", tags = "4, 6, 7")]
        pub answer: Option<Answer>,
    }

    /// `ServerReflectionResponse.message_response`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Answer {
        #[prost(message, tag = "4")]
        FileDescriptors(FileDescriptorResponse),
        #[prost(message, tag = "6")]
        Services(ListServiceResponse),
        #[prost(message, tag = "7")]
        Error(ErrorResponse),
    }

    /// `FileDescriptorResponse`: serialized `FileDescriptorProto`s.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FileDescriptorResponse {
        #[prost(bytes = "vec", repeated, tag = "1")]
        pub file_descriptor_proto: Vec<Vec<u8>>,
    }

    /// `ListServiceResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListServiceResponse {
        #[prost(message, repeated, tag = "1")]
        pub service: Vec<ServiceResponse>,
    }

    /// `ServiceResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServiceResponse {
        #[prost(string, tag = "1")]
        pub name: String,
    }

    /// `ErrorResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ErrorResponse {
        #[prost(int32, tag = "1")]
        pub error_code: i32,
        #[prost(string, tag = "2")]
        pub error_message: String,
    }
}

use wire::{Answer, Query};

const REFLECTION: &str = "grpc.reflection.v1alpha.ServerReflection";
/// The health service the proxy serves and lists besides the user's (not in the original).
const HEALTH: &str = "grpc.health.v1.Health";

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::proxy(
            "reflection proxy: verify that the proxy supports server reflection",
            |ctx| Box::pin(supports_reflection(ctx)),
        )
        .original("ProxyTCK 2"),
        Case::proxy("reflection proxy: describes a served service", |ctx| {
            Box::pin(describes_a_service(ctx))
        })
        .requires(&[EVENT_SOURCED]),
    ]
}

/// Sends `queries` on one reflection stream and returns the answers, in order. A query whose
/// answer is the stream's end with an error status (tonic-reflection's way of saying "not
/// found") gets that status, and is the last one answered.
async fn ask(
    channel: &Channel,
    queries: Vec<Query>,
) -> Result<Vec<Result<Answer, tonic::Status>>, Error> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.check("reflection: connecting")?;
    let requests = queries.into_iter().map(|query| wire::Request {
        host: String::new(),
        query: Some(query),
    });
    let count = requests.len();
    let path =
        PathAndQuery::from_static("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo");
    let call = grpc.streaming(
        tonic::Request::new(tokio_stream::iter(requests)),
        path,
        tonic_prost::ProstCodec::<wire::Request, wire::Response>::default(),
    );
    let answers = async {
        let mut responses = call.await?.into_inner();
        let mut answers = Vec::new();
        while answers.len() < count {
            match responses.next().await {
                Some(Ok(response)) => answers.push(Ok(response.answer)),
                Some(Err(status)) => {
                    answers.push(Err(status));
                    break;
                }
                None => break,
            }
        }
        Ok::<_, tonic::Status>(answers)
    };
    let answers = tokio::time::timeout(PATIENCE, answers)
        .await
        .check("reflection")?
        .check("reflection")?;
    ensure_eq(&answers.len(), &count, "reflection answers")?;
    answers
        .into_iter()
        .map(|answer| match answer {
            Ok(Some(answer)) => Ok(Ok(answer)),
            Ok(None) => Err(Error::Check("a reflection answer is empty".into())),
            Err(status) => Ok(Err(status)),
        })
        .collect()
}

/// The answer, unless the stream ended with an error status instead.
fn answered(answer: &Result<Answer, tonic::Status>) -> Result<&Answer, Error> {
    answer
        .as_ref()
        .map_err(|status| Error::Check(format!("reflection failed: {status}")))
}

/// The service names of a list-services answer.
fn services(answer: &Answer) -> Result<BTreeSet<String>, Error> {
    match answer {
        Answer::Services(list) => Ok(list.service.iter().map(|s| s.name.clone()).collect()),
        other => Err(Error::Check(format!(
            "expected a list of services, got {other:?}"
        ))),
    }
}

async fn supports_reflection(ctx: &Ctx) -> CaseResult {
    let answers = ask(
        &ctx.proxy()?.channel,
        vec![
            Query::ListServices(String::new()),
            Query::ListServices("nonsense.blabla.".into()),
            Query::FileContainingSymbol("nonsense.blabla.Void".into()),
        ],
    )
    .await?;
    let mut expected: BTreeSet<String> = ctx
        .spec()
        .entities
        .iter()
        .map(|entity| entity.service_name.clone())
        .collect();
    expected.insert(REFLECTION.into());
    for answer in &answers[..2] {
        let mut listed = services(answered(answer)?)?;
        // This proxy also serves (and lists) the gRPC health service; the original did not.
        listed.remove(HEALTH);
        ensure_eq(
            &listed,
            &expected,
            "listed services (the argument is ignored)",
        )?;
    }
    // The original answers an empty list of files; the gRPC reflection specification an
    // error response (NOT_FOUND); this proxy (tonic-reflection) ends the stream with the status
    // NOT_FOUND. Each says the symbol is unknown.
    match &answers[2] {
        Ok(Answer::FileDescriptors(files)) => {
            ensure(files.file_descriptor_proto.is_empty(), || {
                "files were returned for an unknown symbol".into()
            })
        }
        Ok(Answer::Error(error)) => {
            ensure_eq(&error.error_code, &5, "error code for an unknown symbol")
        }
        Err(status) => ensure_eq(
            &status.code(),
            &tonic::Code::NotFound,
            "status for an unknown symbol",
        ),
        Ok(other) => Err(Error::Check(format!(
            "unexpected answer for an unknown symbol: {other:?}"
        ))),
    }
}

async fn describes_a_service(ctx: &Ctx) -> CaseResult {
    let answers = ask(
        &ctx.proxy()?.channel,
        vec![Query::FileContainingSymbol(EVENT_SOURCED.into())],
    )
    .await?;
    let Answer::FileDescriptors(files) = answered(&answers[0])? else {
        return Err(Error::Check(format!(
            "expected file descriptors, got {:?}",
            answers[0]
        )));
    };
    let names: Vec<String> = files
        .file_descriptor_proto
        .iter()
        .map(|file| {
            prost_types::FileDescriptorProto::decode(&file[..])
                .map(|file| file.name().to_owned())
                .check("a returned file descriptor")
        })
        .collect::<Result<_, _>>()?;
    ensure(
        names
            .iter()
            .any(|name| name == "cloudstate/tck/model/eventsourced.proto"),
        || format!("the files returned for {EVENT_SOURCED} do not declare it: {names:?}"),
    )
}
