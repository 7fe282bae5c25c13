//! BuildKit's protobuf messages, declared here from the protocol's field numbers (package by
//! package), only the ones berthd sends or reads. Fields we never read are left out: prost skips
//! unknown fields on decode, so a newer client's extra fields are harmless.

use std::collections::HashMap;

/// `google.protobuf.Timestamp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from(chrono::Utc::now())
    }
}

impl From<chrono::DateTime<chrono::Utc>> for Timestamp {
    fn from(t: chrono::DateTime<chrono::Utc>) -> Timestamp {
        Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
    }
}

/// `google.rpc.Status` (details are not read).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `pb.Platform`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Platform {
    #[prost(string, tag = "1")]
    pub architecture: String,
    #[prost(string, tag = "2")]
    pub os: String,
    #[prost(string, tag = "3")]
    pub variant: String,
}

/// `pb.Definition`: raw LLB. Only its presence is looked at (berthd runs Dockerfiles, not LLB).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Definition {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub def: Vec<Vec<u8>>,
}

// --- moby.buildkit.v1 (Control) ---------------------------------------------------------------

#[derive(Clone, PartialEq, prost::Message)]
pub struct Exporter {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(map = "string, string", tag = "2")]
    pub attrs: HashMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CacheOptionsEntry {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(map = "string, string", tag = "2")]
    pub attrs: HashMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CacheOptions {
    #[prost(message, repeated, tag = "4")]
    pub exports: Vec<CacheOptionsEntry>,
    #[prost(message, repeated, tag = "5")]
    pub imports: Vec<CacheOptionsEntry>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SolveRequest {
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(message, optional, tag = "2")]
    pub definition: Option<Definition>,
    #[prost(string, tag = "3")]
    pub exporter_deprecated: String,
    #[prost(map = "string, string", tag = "4")]
    pub exporter_attrs_deprecated: HashMap<String, String>,
    #[prost(string, tag = "5")]
    pub session: String,
    #[prost(string, tag = "6")]
    pub frontend: String,
    #[prost(map = "string, string", tag = "7")]
    pub frontend_attrs: HashMap<String, String>,
    #[prost(message, optional, tag = "8")]
    pub cache: Option<CacheOptions>,
    #[prost(string, repeated, tag = "9")]
    pub entitlements: Vec<String>,
    #[prost(map = "string, message", tag = "10")]
    pub frontend_inputs: HashMap<String, Definition>,
    #[prost(bool, tag = "11")]
    pub internal: bool,
    #[prost(message, repeated, tag = "13")]
    pub exporters: Vec<Exporter>,
    #[prost(bool, tag = "14")]
    pub enable_session_exporter: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SolveResponse {
    #[prost(map = "string, string", tag = "1")]
    pub exporter_response: HashMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusRequest {
    #[prost(string, tag = "1")]
    pub r#ref: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusResponse {
    #[prost(message, repeated, tag = "1")]
    pub vertexes: Vec<Vertex>,
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<VertexStatus>,
    #[prost(message, repeated, tag = "3")]
    pub logs: Vec<VertexLog>,
    #[prost(message, repeated, tag = "4")]
    pub warnings: Vec<VertexWarning>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Vertex {
    #[prost(string, tag = "1")]
    pub digest: String,
    #[prost(string, repeated, tag = "2")]
    pub inputs: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(bool, tag = "4")]
    pub cached: bool,
    #[prost(message, optional, tag = "5")]
    pub started: Option<Timestamp>,
    #[prost(message, optional, tag = "6")]
    pub completed: Option<Timestamp>,
    #[prost(string, tag = "7")]
    pub error: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct VertexStatus {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub vertex: String,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(int64, tag = "4")]
    pub current: i64,
    #[prost(int64, tag = "5")]
    pub total: i64,
    #[prost(message, optional, tag = "6")]
    pub timestamp: Option<Timestamp>,
    #[prost(message, optional, tag = "7")]
    pub started: Option<Timestamp>,
    #[prost(message, optional, tag = "8")]
    pub completed: Option<Timestamp>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct VertexLog {
    #[prost(string, tag = "1")]
    pub vertex: String,
    #[prost(message, optional, tag = "2")]
    pub timestamp: Option<Timestamp>,
    #[prost(int64, tag = "3")]
    pub stream: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub msg: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct VertexWarning {
    #[prost(string, tag = "1")]
    pub vertex: String,
    #[prost(int64, tag = "2")]
    pub level: i64,
    #[prost(bytes = "vec", tag = "3")]
    pub short: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BuildkitVersion {
    #[prost(string, tag = "1")]
    pub package: String,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(string, tag = "3")]
    pub revision: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InfoResponse {
    #[prost(message, optional, tag = "1")]
    pub buildkit_version: Option<BuildkitVersion>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GcPolicy {
    #[prost(bool, tag = "1")]
    pub all: bool,
    #[prost(int64, tag = "2")]
    pub keep_duration: i64,
    #[prost(int64, tag = "3")]
    pub reserved_space: i64,
    #[prost(string, repeated, tag = "4")]
    pub filters: Vec<String>,
    #[prost(int64, tag = "5")]
    pub max_used_space: i64,
    #[prost(int64, tag = "6")]
    pub min_free_space: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WorkerRecord {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(map = "string, string", tag = "2")]
    pub labels: HashMap<String, String>,
    #[prost(message, repeated, tag = "3")]
    pub platforms: Vec<Platform>,
    #[prost(message, repeated, tag = "4")]
    pub gc_policy: Vec<GcPolicy>,
    #[prost(message, optional, tag = "5")]
    pub buildkit_version: Option<BuildkitVersion>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListWorkersResponse {
    #[prost(message, repeated, tag = "1")]
    pub record: Vec<WorkerRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DiskUsageRequest {
    #[prost(string, repeated, tag = "1")]
    pub filter: Vec<String>,
    #[prost(int64, tag = "2")]
    pub age_limit: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UsageRecord {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(bool, tag = "2")]
    pub mutable: bool,
    #[prost(bool, tag = "3")]
    pub in_use: bool,
    #[prost(int64, tag = "4")]
    pub size: i64,
    #[prost(message, optional, tag = "6")]
    pub created_at: Option<Timestamp>,
    #[prost(message, optional, tag = "7")]
    pub last_used_at: Option<Timestamp>,
    #[prost(int64, tag = "8")]
    pub usage_count: i64,
    #[prost(string, tag = "9")]
    pub description: String,
    #[prost(string, tag = "10")]
    pub record_type: String,
    #[prost(bool, tag = "11")]
    pub shared: bool,
    #[prost(string, repeated, tag = "12")]
    pub parents: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DiskUsageResponse {
    #[prost(message, repeated, tag = "1")]
    pub record: Vec<UsageRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PruneRequest {
    #[prost(string, repeated, tag = "1")]
    pub filter: Vec<String>,
    #[prost(bool, tag = "2")]
    pub all: bool,
    #[prost(int64, tag = "3")]
    pub keep_duration: i64,
    #[prost(int64, tag = "4")]
    pub reserved_space: i64,
    #[prost(int64, tag = "5")]
    pub max_used_space: i64,
    #[prost(int64, tag = "6")]
    pub min_free_space: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BuildHistoryRequest {
    #[prost(bool, tag = "1")]
    pub active_only: bool,
    #[prost(string, tag = "2")]
    pub r#ref: String,
    #[prost(bool, tag = "3")]
    pub early_exit: bool,
}

// --- moby.buildkit.v1.frontend (LLBBridge) ----------------------------------------------------

#[derive(Clone, PartialEq, prost::Message)]
pub struct ApiCap {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(bool, tag = "2")]
    pub enabled: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PongResponse {
    #[prost(message, repeated, tag = "1")]
    pub frontend_api_caps: Vec<ApiCap>,
    #[prost(message, repeated, tag = "2")]
    pub llb_caps: Vec<ApiCap>,
    #[prost(message, repeated, tag = "3")]
    pub workers: Vec<WorkerRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GatewaySolveRequest {
    #[prost(message, optional, tag = "1")]
    pub definition: Option<Definition>,
    #[prost(string, tag = "2")]
    pub frontend: String,
    #[prost(map = "string, string", tag = "3")]
    pub frontend_opt: HashMap<String, String>,
    #[prost(bool, tag = "5")]
    pub allow_result_return: bool,
    #[prost(bool, tag = "6")]
    pub allow_result_array_ref: bool,
    #[prost(bool, tag = "10")]
    pub r#final: bool,
    #[prost(bytes = "vec", tag = "11")]
    pub exporter_attr: Vec<u8>,
    #[prost(map = "string, message", tag = "13")]
    pub frontend_inputs: HashMap<String, Definition>,
    #[prost(bool, tag = "14")]
    pub evaluate: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Ref {
    #[prost(string, tag = "1")]
    pub id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RefMap {
    #[prost(map = "string, message", tag = "1")]
    pub refs: HashMap<String, Ref>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RefMapDeprecated {
    #[prost(map = "string, string", tag = "1")]
    pub refs: HashMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ResultKind {
    #[prost(string, tag = "1")]
    RefDeprecated(String),
    #[prost(message, tag = "2")]
    RefsDeprecated(RefMapDeprecated),
    #[prost(message, tag = "3")]
    Ref(Ref),
    #[prost(message, tag = "4")]
    Refs(RefMap),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GatewayResult {
    #[prost(oneof = "ResultKind", tags = "1, 2, 3, 4")]
    pub result: Option<ResultKind>,
    #[prost(map = "string, bytes", tag = "10")]
    pub metadata: HashMap<String, Vec<u8>>,
}

impl GatewayResult {
    /// The result's non-empty ref ids (one for a Dockerfile build; none for a build that only
    /// asked for options, as buildx's first, internal one).
    pub fn ref_ids(&self) -> Vec<String> {
        let ids: Vec<String> = match &self.result {
            Some(ResultKind::Ref(r)) => vec![r.id.clone()],
            Some(ResultKind::RefDeprecated(id)) => vec![id.clone()],
            Some(ResultKind::Refs(m)) => m.refs.values().map(|r| r.id.clone()).collect(),
            Some(ResultKind::RefsDeprecated(m)) => m.refs.values().cloned().collect(),
            None => vec![],
        };
        ids.into_iter().filter(|id| !id.is_empty()).collect()
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GatewaySolveResponse {
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(message, optional, tag = "3")]
    pub result: Option<GatewayResult>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReturnRequest {
    #[prost(message, optional, tag = "1")]
    pub result: Option<GatewayResult>,
    #[prost(message, optional, tag = "2")]
    pub error: Option<RpcStatus>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FileRange {
    #[prost(int64, tag = "1")]
    pub offset: i64,
    #[prost(int64, tag = "2")]
    pub length: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadFileRequest {
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(string, tag = "2")]
    pub file_path: String,
    #[prost(message, optional, tag = "3")]
    pub range: Option<FileRange>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadFileResponse {
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WarnRequest {
    #[prost(string, tag = "1")]
    pub digest: String,
    #[prost(int64, tag = "2")]
    pub level: i64,
    #[prost(bytes = "vec", tag = "3")]
    pub short: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InputsResponse {
    #[prost(map = "string, message", tag = "1")]
    pub definitions: HashMap<String, Definition>,
}

// --- fsutil.types and the session services -----------------------------------------------------

/// `fsutil.types.Stat`: `mode` is Go's `os.FileMode` (type bits high, permissions low).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Stat {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(uint32, tag = "2")]
    pub mode: u32,
    #[prost(uint32, tag = "3")]
    pub uid: u32,
    #[prost(uint32, tag = "4")]
    pub gid: u32,
    #[prost(int64, tag = "5")]
    pub size: i64,
    #[prost(int64, tag = "6")]
    pub mod_time: i64,
    #[prost(string, tag = "7")]
    pub linkname: String,
    #[prost(int64, tag = "8")]
    pub devmajor: i64,
    #[prost(int64, tag = "9")]
    pub devminor: i64,
}

pub const PACKET_STAT: i32 = 0;
pub const PACKET_REQ: i32 = 1;
pub const PACKET_DATA: i32 = 2;
pub const PACKET_FIN: i32 = 3;
pub const PACKET_ERR: i32 = 4;

/// `fsutil.types.Packet`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Packet {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub stat: Option<Stat>,
    #[prost(uint32, tag = "3")]
    pub id: u32,
    #[prost(bytes = "vec", tag = "4")]
    pub data: Vec<u8>,
}

/// `moby.filesync.v1.BytesMessage` (FileSend's tar stream).
#[derive(Clone, PartialEq, prost::Message)]
pub struct BytesMessage {
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
}

/// `moby.sshforward.v1.CheckAgentRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckAgentRequest {
    #[prost(string, tag = "1")]
    pub id: String,
}

/// `moby.buildkit.secrets.v1.GetSecretRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetSecretRequest {
    #[prost(string, tag = "1")]
    pub id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetSecretResponse {
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
}

/// `moby.filesync.v1.CredentialsRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CredentialsRequest {
    #[prost(string, tag = "1")]
    pub host: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CredentialsResponse {
    #[prost(string, tag = "1")]
    pub username: String,
    #[prost(string, tag = "2")]
    pub secret: String,
}
