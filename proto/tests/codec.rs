//! The generated servers and clients through a real server on 127.0.0.1:0: an undecodable
//! request is INVALID_ARGUMENT at the server, an undecodable reply INTERNAL at the client.

use faas_proto::codec::{self, ClientCodec};
use faas_proto::container::container_service_server::{ContainerService, ContainerServiceServer};
use faas_proto::container::{
    BindReply, BindRequest, InvokeReply, InvokeRequest, StatusReply, StatusRequest,
};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Request, Response, Status};

/// Answers every Invoke with a body that is not UTF-8 (fine for `InvokeReply.body`, a
/// `bytes` field; not for `StatusReply.function_name`, the `string` field with the same tag).
struct Fixed;

#[tonic::async_trait]
impl ContainerService for Fixed {
    async fn logs(
        &self,
        _: Request<faas_proto::container::LogsRequest>,
    ) -> Result<Response<faas_proto::container::LogsReply>, Status> {
        Err(Status::unimplemented("this fake keeps no logs"))
    }
    async fn invoke(&self, r: Request<InvokeRequest>) -> Result<Response<InvokeReply>, Status> {
        Ok(Response::new(InvokeReply {
            body: r.into_inner().event,
            ..Default::default()
        }))
    }
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        Ok(Response::new(StatusReply::default()))
    }
    async fn bind(&self, _: Request<BindRequest>) -> Result<Response<BindReply>, Status> {
        Ok(Response::new(BindReply {}))
    }
}

async fn serve() -> (tonic::transport::Channel, faas_common::shutdown::Trigger) {
    let listener = faas_common::serve::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, shutdown) = faas_common::shutdown::channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ContainerServiceServer::new(Fixed))
            .serve_with_incoming_shutdown(faas_common::serve::incoming(listener), shutdown.wait()),
    );
    let channel = faas_common::serve::connect(&addr.to_string())
        .await
        .unwrap();
    (channel, trigger)
}

#[tokio::test]
async fn an_undecodable_request_is_invalid_argument() {
    let (channel, trigger) = serve().await;
    // InvokeRequest.request_id (field 1, a string) holding bytes that are not UTF-8.
    codec::check_refuses_undecodable(
        channel.clone(),
        "/faas.container.v1.ContainerService/Invoke",
        "faas.container.v1.InvokeRequest",
    )
    .await
    .unwrap();
    // The check fails on a server that names another message.
    let wrong = codec::check_refuses_undecodable(
        channel.clone(),
        "/faas.container.v1.ContainerService/Invoke",
        "faas.container.v1.BindRequest",
    )
    .await
    .unwrap_err();
    assert!(wrong.contains("InvalidArgument"), "{wrong}");
    // A valid body through the same raw path is served: the refusal was the bytes.
    let reply = codec::call_raw(
        channel,
        "/faas.container.v1.ContainerService/Status",
        Vec::new(),
    )
    .await
    .unwrap();
    assert!(
        reply.is_empty(),
        "an all-default StatusReply encodes to nothing"
    );
    trigger.trigger();
}

#[tokio::test]
async fn an_undecodable_reply_is_internal_at_the_client() {
    let (channel, trigger) = serve().await;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    // Invoke echoes the event into InvokeReply.body (field 1, bytes); read as a StatusReply,
    // field 1 is a string, and these bytes are not UTF-8.
    let request = InvokeRequest {
        event: vec![0xff, 0xfe],
        ..Default::default()
    };
    let err = grpc
        .unary(
            Request::new(request),
            PathAndQuery::from_static("/faas.container.v1.ContainerService/Invoke"),
            ClientCodec::<InvokeRequest, StatusReply>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert!(
        err.message()
            .starts_with("the reply is not a valid faas.container.v1.StatusReply message"),
        "{}",
        err.message()
    );
    trigger.trigger();
}
