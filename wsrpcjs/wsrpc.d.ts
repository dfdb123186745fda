// Type declarations for wsrpc.js, wsrpc's browser client.
//
// Describe the server's methods and topics to have the editor check
// method names, arguments, results and event data:
//
//   interface Demo {
//     add: (args: { a: number; b: number }) => number;
//     greet: () => string;
//   }
//   interface Topics { time: string }
//   const client = connect<Demo, Topics>("/ws");
//   const sum = await client.call("add", { a: 1, b: 2 }); // number
//   await client.subscribe("time", (iso) => console.log(iso)); // iso: string

/** A map of method names to their signatures: (keyword arguments) => result. */
export type MethodMap = { [method: string]: (args: any) => any };
/** A map of topic names to the type of the data published on them. */
export type TopicMap = { [topic: string]: any };

/** The methods every wsrpc server answers, whatever else it has. */
export interface BuiltinMethods {
  _ping_: () => "pong";
  _get_channel_id_: () => string;
}

/** What the client does not know: any method, any arguments, any result. */
export type AnyMethods = { [method: string]: (args?: Record<string, unknown>) => unknown };

/** The result of a method, unwrapped from a Promise. */
export type ResultOf<F> = F extends (...args: any[]) => infer R ? Awaited<R> : unknown;

/** The parameters of Client.call for a method: its keyword arguments (optional when it takes none, or all are optional), then the call's options. */
export type CallArgs<F> = F extends (...args: infer P) => any
  ? P extends []
    ? [args?: Record<string, never>, options?: CallOptions]
    : P extends [infer A]
      ? undefined extends A
        ? [args?: A, options?: CallOptions]
        : [args: A, options?: CallOptions]
      : [args?: Record<string, unknown>, options?: CallOptions]
  : [args?: Record<string, unknown>, options?: CallOptions];

/** Why a call failed: RpcError.code. */
export type RpcErrorCode =
  /** Sent, and no answer in time: the outcome is unknown. */
  | "timeout"
  /** Never sent: no connection in time, or none with waitForReady off. */
  | "not_connected"
  /** Sent, then the connection dropped before the answer: the outcome is unknown. */
  | "connection_lost"
  /** The call's AbortSignal fired (cause: its reason). */
  | "aborted"
  /** The client was closed. */
  | "closed"
  /** The peer answered with an error: remoteCode, message and data are its. */
  | "remote";

/** The JSON-RPC error codes a wsrpc peer answers with. */
export declare const RemoteCode: {
  readonly PARSE_ERROR: -32700;
  readonly INVALID_REQUEST: -32600;
  readonly METHOD_NOT_FOUND: -32601;
  readonly INVALID_PARAMS: -32602;
  readonly INTERNAL_ERROR: -32603;
  readonly SERVER_ERROR: -32000;
};

/** The one error a call rejects with. */
export declare class RpcError extends Error {
  constructor(code: RpcErrorCode, message: string, options?: { remoteCode?: number; data?: unknown; method?: string; cause?: unknown });
  readonly name: "RpcError";
  readonly code: RpcErrorCode;
  /** The peer's error code (code "remote"), such as -32601 for an unknown method. */
  readonly remoteCode?: number;
  /** The peer's error data (code "remote"), if it sent any. */
  readonly data?: unknown;
  /** The method that was called. */
  readonly method?: string;
  /** The error a method exposed to the server throws to answer with remoteCode, message and data. */
  static remote(remoteCode: number, message: string, data?: unknown): RpcError;
}

/** The topic that subscribes to every topic. */
export declare const ALL_TOPICS: "__EventNotifier_ALL_TOPICS__";

/** The state of a Client's connection. */
export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

/** What a "retry" event tells: the next try, when, and why the last one ended. */
export interface RetryInfo {
  /** The tries since the connection was last open, this one included. */
  attempt: number;
  /** Milliseconds until this try. */
  delay: number;
  /** The close code of the connection that ended (1006: it failed or dropped). */
  code?: number;
  reason?: string;
  /** The error that stopped the try before it began (the token function's, say). */
  error?: unknown;
}

/** Options of one call. */
export interface CallOptions {
  /** Milliseconds to wait for the answer, a connection included; Infinity: no limit. Default: the client's callTimeout. */
  timeout?: number;
  /** The latest time to wait until, in ms since the epoch (a handler's ctx.deadline, for a nested call). */
  deadline?: number;
  /** Aborting it rejects the call with "aborted" and tells a wsrpc server to cancel the handler. */
  signal?: AbortSignal;
}

/** What a method exposed to the server gets besides its arguments. */
export interface CallContext<Remote extends object = AnyMethods> {
  /** Fires when the server canceled the call, its deadline passed, or the connection dropped. */
  signal: AbortSignal;
  /** The server's deadline for the call, in ms since the epoch (wsrpc.v1 only). */
  deadline?: number;
  callId: string | null;
  method: string;
  client: Client<Remote>;
}

/** A method exposed to the server: it returns the result, or a Promise of it, or throws (RpcError.remote to choose the code). */
export type LocalMethod<Remote extends object = AnyMethods> = (args: any, ctx: CallContext<Remote>) => unknown;

export interface ClientOptions<Remote extends object = AnyMethods> {
  /** Methods the server may call. */
  methods?: { [name: string]: LocalMethod<Remote> };
  /** A token for the server's Authenticate hook, or a function that returns one (called at every connect). */
  token?: string | (() => string | undefined | Promise<string | undefined>);
  /**
   * How the token travels: "protocol" (default) as the subprotocol
   * wsrpc.token.<base64url of the token>, or "query" as the query
   * parameter tokenParam. The Go server's wsrpc.RequestToken reads both.
   */
  tokenIn?: "protocol" | "query";
  /** The query parameter of tokenIn "query". Default: access_token. */
  tokenParam?: string;
  /** Reconnect backoff bounds in ms (defaults 500 and 20000); false: close when the connection ends. */
  reconnect?: false | { minDelay?: number; maxDelay?: number };
  /** _ping_ every interval ms (default 30000); a connection silent for interval + timeout (default: interval) is dropped. false: off. */
  keepAlive?: false | { interval?: number; timeout?: number };
  /** Default timeout of calls, in ms. Default 30000; Infinity: none. */
  callTimeout?: number;
  /** How long one connect may take, in ms. Default 10000. */
  connectTimeout?: number;
  /** Calls made while not connected wait for the connection (default) rather than reject with "not_connected". */
  waitForReady?: boolean;
  /** Send the message of a method's non-RpcError exception to the server, instead of "internal error". */
  sendErrorDetails?: boolean;
  /** The WebSocket constructor. Default: globalThis.WebSocket. */
  WebSocket?: { new (url: string, protocols?: string | string[]): WebSocket };
}

/** A subscription made by Client.subscribe. */
export interface Subscription {
  readonly topics: string[];
  /** Removes this subscription's handler; resolves once the server confirmed (when no handler is left for a topic). */
  unsubscribe(): Promise<void>;
}

export interface ClientEvents {
  state: (state: ConnectionState, previous: ConnectionState) => void;
  retry: (info: RetryInfo) => void;
  /** Errors no caller waits for: a method's exception, a bad frame, a failed re-subscribe. */
  error: (err: unknown) => void;
}

/** Topic names, typed where the TopicMap names them. */
type TopicName<Topics> = (keyof Topics & string) | typeof ALL_TOPICS | (string & {});
type TopicData<Topics, K> = K extends keyof Topics ? Topics[K] : unknown;

/**
 * A connection to a wsrpc (or fastapi_websocket_rpc) server that stays up:
 * it dials in the background, reconnects with jittered backoff, keeps the
 * link alive with _ping_, subscribes again after every reconnect, and
 * answers the server's calls with its methods.
 */
export declare class Client<Remote extends object = AnyMethods, Topics extends object = TopicMap> {
  constructor(url: string | URL, options?: ClientOptions<Remote>);
  readonly state: ConnectionState;
  /** The channel id this client answers _get_channel_id_ with. */
  readonly channelId: string;
  /** Whether the open connection negotiated wsrpc.v1: deadlines and cancellation travel. */
  readonly extensions: boolean;
  /** The topics the client is subscribed to. */
  readonly topics: string[];

  /** Calls method on the server with keyword arguments and resolves with its result. */
  call<M extends keyof (Remote & BuiltinMethods) & string>(method: M, ...rest: CallArgs<(Remote & BuiltinMethods)[M]>): Promise<ResultOf<(Remote & BuiltinMethods)[M]>>;

  /** Makes fn callable by the server as name. */
  expose(name: string, fn: LocalMethod<Remote>): void;

  /** Calls handler for every event on topics, across reconnects, in the order published; resolves once the server confirmed. */
  subscribe<K extends TopicName<Topics>>(
    topics: K | K[],
    handler: (data: TopicData<Topics, K>, topic: string) => void,
    options?: CallOptions,
  ): Promise<Subscription>;

  /** Removes handler (or every handler) from topics. */
  unsubscribe(topics: TopicName<Topics> | TopicName<Topics>[], handler?: (data: any, topic: string) => void, options?: CallOptions): Promise<void>;

  /** Publishes data on topics; with sync (default) resolves once the subscribers got it. */
  publish<K extends TopicName<Topics>>(
    topics: K | K[],
    data?: TopicData<Topics, K>,
    options?: CallOptions & { sync?: boolean; notifierId?: string },
  ): Promise<boolean>;

  /** Resolves once the client is open. */
  ready(options?: CallOptions): Promise<void>;

  /** Adds a listener; returns a function that removes it. */
  on<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): () => void;

  /** Closes the connection and stops reconnecting; resolves once the socket closed. */
  close(): Promise<void>;
}

/** Returns a Client of url, already dialling in the background. */
export declare function connect<Remote extends object = AnyMethods, Topics extends object = TopicMap>(
  url: string | URL,
  options?: ClientOptions<Remote>,
): Client<Remote, Topics>;
