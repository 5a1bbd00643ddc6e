namespace PeerSharp.Growth;

/// <summary>Where <see cref="ExpertGrowth"/> puts the new sub-keys (<see cref="GrowthOptions.Placement"/>).</summary>
public enum KeyPlacement
{
    /// <summary>Fresh random keys scaled by <see cref="GrowthOptions.NewKeyScale"/>.</summary>
    Random,
    /// <summary>
    /// At the centres of the new domain's queries (k-means per half), each scaled down until no sampled query of the
    /// old domain would take it into its top-k: the new domain's queries can reach the new experts while the old
    /// domain's selections, and so its outputs, stay as they were (DESIGN.md "Growth that routes").
    /// </summary>
    Queries,
}
