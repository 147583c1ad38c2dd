namespace StreamClone.Perf;

/// <summary>What a generated 4 KiB page looks like.</summary>
public enum PageKind
{
    /// <summary>All zero bytes (free or never-touched memory, sparse disk).</summary>
    Zero = 0,
    /// <summary>Words and log lines: compresses to roughly a third.</summary>
    Text = 1,
    /// <summary>x86-64-like instruction stream with jump and pointer tables.</summary>
    Code = 2,
    /// <summary>Arrays of records: little-endian pointers, small ints, flags, zero padding.</summary>
    Structured = 3,
    /// <summary>Uniform random bytes: incompressible (page cache of compressed files, crypto keys).</summary>
    Random = 4,
    /// <summary>A byte-for-byte copy of a page earlier in the image (shared libraries, forked processes).</summary>
    Duplicate = 5,
}
