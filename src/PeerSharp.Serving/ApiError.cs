using System.Text.Json.Nodes;

namespace PeerSharp.Serving;

/// <summary>A request the server refuses, answered with the OpenAI API's error body: {"error": {message, type, param, code}}.</summary>
public sealed class ApiError(int status, string message, string? param = null, string? code = null) : Exception(message)
{
    /// <summary>The HTTP status.</summary>
    public int Status => status;

    /// <summary>The error body.</summary>
    public JsonObject Body() => new()
    {
        ["error"] = new JsonObject
        {
            ["message"] = Message,
            ["type"] = status switch { 401 => "authentication_error", 404 => "not_found_error", 429 => "rate_limit_error", >= 500 => "server_error", _ => "invalid_request_error" },
            ["param"] = param,
            ["code"] = code,
        },
    };
}
