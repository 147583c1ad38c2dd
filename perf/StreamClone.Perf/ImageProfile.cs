namespace StreamClone.Perf;

/// <summary>Which kind of image <see cref="ImageGenerator"/> writes.</summary>
public enum ImageProfile
{
    /// <summary>A guest RAM dump: many zero pages, short runs of mixed content, some duplicates.</summary>
    Memory = 0,
    /// <summary>A disk image: fewer zeros, more text and structured blocks, longer runs.</summary>
    Disk = 1,
}
