namespace PeerSharp.Layers;

/// <summary>
/// How one forward of a mixture-of-experts layer routed its tokens: what the capacity limit kept and dropped.
/// </summary>
/// <param name="Groups">Routing groups: tokens compete for an expert's capacity only within their group.</param>
/// <param name="GroupSize">Tokens per group.</param>
/// <param name="Capacity">Token slots of each expert in each group; the experts compute all of them.</param>
/// <param name="Assignments">(token, expert) pairs the experts computed.</param>
/// <param name="DroppedAssignments">(token, expert) choices refused because the expert was full (token choice).</param>
/// <param name="UnroutedTokens">Tokens no expert processed: their feed-forward output is zero, so only the residual carries them.</param>
public sealed record MoeRoutingRecord(long Groups, long GroupSize, long Capacity, long Assignments, long DroppedAssignments, long UnroutedTokens);
