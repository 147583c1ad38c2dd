namespace StreamClone.Tests.Unit;

public class SmokeTests { [Fact] public void Builds() => Assert.True(true); }
