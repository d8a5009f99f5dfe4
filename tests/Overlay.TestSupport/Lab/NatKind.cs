namespace Overlay.TestSupport.Lab;

/// <summary>How a lab host reaches the lab's "internet".</summary>
public enum NatKind
{
    /// <summary>The host sits directly on the internet bridge with a public address.</summary>
    Public,

    /// <summary>Behind a router doing plain MASQUERADE: an endpoint-independent ("cone") mapping.</summary>
    Cone,

    /// <summary>Behind a router doing MASQUERADE --random-fully: a new mapping per destination ("symmetric").</summary>
    Symmetric,
}
