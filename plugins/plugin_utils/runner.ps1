# hybridmail.exchange runner - the only code the collection runs on an Exchange server.
#
# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Sent as ONE script: a line assigning $HybridmailRequest (base64 of UTF-8 JSON), then this file (docs/wire-contract.md).
# The controller checked the request (_runner.check_request); this file re-checks what keeps the server safe, loads the
# Exchange cmdlets once, splats each call into an allow-listed cmdlet, converts what it returns, prints ONE result line.
# Windows PowerShell 5.1 hazards, marked [Hn] where handled (each explained in docs/tested.md):
#  H1 ConvertTo-Json depth/enums/dates  H2 array unrolling, `return ,$x`  H3 enums: names, ints, deserialized
#  H4 DateTime Kind, /Date()/  H5 byte[] vs deserialized RawData  H6 non-terminating errors: -ErrorAction Stop
#  H7 Get-WinEvent NoMatchingEventsFound = no events (CSS-Exchange ManagedAvailabilityTroubleshooter.ps1)
#  H8 Get-HybridConfiguration returns nothing / is no command on Edge  H9 Get-Queue on Edge
#  H10 stray output before the result line  H11 console code page  H12 Set-StrictMode
#  H13 $ErrorActionPreference stops at module scopes  H14 RemoteExchange.ps1 in a function scope
#  H15 ConstrainedLanguage mode (checked first, as CSS-Exchange Setup/SetupAssist/SetupAssist.ps1 does)  H16 Connect-
#  ExchangeServer falls back to Read-Host, whose NonInteractive error hides why no server answered

# [H15] First, with only what ConstrainedLanguage allows: nothing else runs outside FullLanguage.
if ($ExecutionContext.SessionState.LanguageMode -ne 'FullLanguage') {
    Write-Output ('HYBRIDMAIL-REFUSED:LanguageMode:' + $ExecutionContext.SessionState.LanguageMode)
    exit 1
}
Set-StrictMode -Version 2 -ErrorAction Stop  # [H12]
$ErrorActionPreference = 'Stop'  # for this file only [H13]
$ProgressPreference = 'SilentlyContinue'

$HybridmailWireVersion = 1
$HybridmailResultPrefix = 'HYBRIDMAIL-RESULT:'
# Mirrors _runner.ALLOWED_CMDLETS (a unit test keeps them equal); the last four need no Exchange session.
$AllowedCmdlets = @(
    'Get-ExchangeServer', 'Get-ExchangeCertificate', 'Get-TransportService', 'Get-SendConnector', 'Get-ReceiveConnector',
    'Get-HybridConfiguration', 'Get-Queue', 'Enable-ExchangeCertificate', 'Remove-ExchangeCertificate', 'Set-SendConnector',
    'Set-ReceiveConnector', 'Import-ExchangeCertificate', 'Set-HybridConfiguration', 'Get-ManagementRoleAssignment',
    'Get-ManagementRole', 'Get-SettingOverride', 'Get-WinEvent', 'Get-HybridmailHost', 'Get-HybridmailCertificateChain',
    'Get-HybridmailTlsState')
$SessionFreeCmdlets = @('Get-WinEvent', 'Get-HybridmailHost', 'Get-HybridmailCertificateChain', 'Get-HybridmailTlsState')
$SessionLoads = @('auto', 'none', 'snapin', 'remote_exchange')

function Get-HybridmailHost {
    # Read-only helper: this host, its PowerShell, and the account the session runs as.
    [CmdletBinding()] param()
    $ip = [System.Net.NetworkInformation.IPGlobalProperties]::GetIPGlobalProperties()
    $fqdn = $ip.HostName
    if ($ip.DomainName) { $fqdn = $ip.HostName + '.' + $ip.DomainName }
    $edition = 'Desktop'  # $PSVersionTable.PSEdition is absent before 5.1; those are all Desktop
    if ($PSVersionTable.ContainsKey('PSEdition')) { $edition = [string]$PSVersionTable['PSEdition'] }
    [pscustomobject]@{ ComputerName = $env:COMPUTERNAME; Fqdn = $fqdn; Domain = $ip.DomainName; PSEdition = $edition
        PowerShellVersion = $PSVersionTable.PSVersion.ToString(); OSVersion = [System.Environment]::OSVersion.Version.ToString()
        Culture = [System.Globalization.CultureInfo]::CurrentCulture.Name; LanguageMode = [string]$ExecutionContext.SessionState.LanguageMode
        UserName = [System.Security.Principal.WindowsIdentity]::GetCurrent().Name }
}

function Get-HybridmailCertificateChain {
    # Read-only helper, per certificate in Cert:\LocalMachine\My: the chain Windows builds from the local
    # stores, leaf first. No revocation check, nothing downloaded: what Schannel can send is what is here.
    [CmdletBinding()] param()
    foreach ($certificate in @(Get-ChildItem -Path 'Cert:\LocalMachine\My' -ErrorAction Stop)) {
        $chain = New-Object -TypeName System.Security.Cryptography.X509Certificates.X509Chain -ArgumentList $true -ErrorAction Stop
        $chain.ChainPolicy.RevocationMode = [System.Security.Cryptography.X509Certificates.X509RevocationMode]::NoCheck
        $chain.ChainPolicy.UrlRetrievalTimeout = [System.TimeSpan]::FromMilliseconds(1)
        if ($chain.ChainPolicy.PSObject.Properties['DisableCertificateDownloads']) { $chain.ChainPolicy.DisableCertificateDownloads = $true }
        $null = $chain.Build($certificate)
        $elements = @(foreach ($element in $chain.ChainElements) { $element.Certificate })
        $status = @(foreach ($item in $chain.ChainStatus) { $item.Status.ToString() -split ', ' })
        [pscustomobject]@{ Thumbprint = $certificate.Thumbprint; ChainStatus = [string[]]@($status | Select-Object -Unique -ErrorAction Stop)
            ChainThumbprints = [string[]]@(foreach ($element in $elements) { $element.Thumbprint })
            ChainRawData = [string[]]@(foreach ($element in $elements) { [System.Convert]::ToBase64String($element.RawData) }) }
        $null = $chain.Reset()
    }
}

function Get-HybridmailTlsState {
    # Read-only helper: registry values as CSS-Exchange reads them (Shared/TLS/Get-AllTlsSettingsFromRegistry.ps1, HealthChecker
    # Get-ExchangeRegistryValues.ps1), bool ('0' or empty = false; [string] takes DWORD and string) or null when absent.
    [CmdletBinding()] param()
    $tls12 = 'HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Control\SecurityProviders\SCHANNEL\Protocols\TLS 1.2\'
    $keys = [ordered]@{
        Tls12ClientEnabled = @(($tls12 + 'Client'), 'Enabled'); Tls12ClientDisabledByDefault = @(($tls12 + 'Client'), 'DisabledByDefault')
        Tls12ServerEnabled = @(($tls12 + 'Server'), 'Enabled'); Tls12ServerDisabledByDefault = @(($tls12 + 'Server'), 'DisabledByDefault')
        StrongCryptoNet4 = @('HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\.NETFramework\v4.0.30319', 'SchUseStrongCrypto')
        EccCertificateSupport = @('HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\ExchangeServer\v15\Diagnostics', 'EnableEccCertificateSupport')
    }
    $state = [ordered]@{}
    foreach ($name in $keys.Keys) {
        $value = [Microsoft.Win32.Registry]::GetValue($keys[$name][0], $keys[$name][1], $null); $state[$name] = $null
        if ($null -ne $value) { $state[$name] = (@('0', '') -notcontains ([string]$value).Trim()) }
    }
    [pscustomobject]$state
}

function Read-HybridmailProperty {
    # One property of an object (request or cmdlet output); $Default when it has none, it is null or its getter throws.
    param($InputObject, [string]$Name, $Default = $null)
    $property = $InputObject.PSObject.Properties[$Name]
    try { if ($null -ne $property -and $null -ne $property.Value) { return ,$property.Value } } catch { $property = $null }
    return ,$Default  # [H2]
}

function ConvertTo-HybridmailArgument {
    # A parameter value from ConvertFrom-Json -> the value splatted. Typed values first; any other JSON
    # object -> hashtable (Get-WinEvent -FilterHashtable), array -> object[] [H2], scalars as they are.
    param($Value)
    if ($Value -is [System.Array]) { return ,@(foreach ($item in $Value) { ,(ConvertTo-HybridmailArgument -Value $item) }) }
    if ($Value -isnot [System.Management.Automation.PSCustomObject]) { return $Value }
    $kind = Read-HybridmailProperty -InputObject $Value -Name '__hybridmail'
    $given = Read-HybridmailProperty -InputObject $Value -Name 'value'
    if ($null -eq $kind) {
        $table = @{}
        foreach ($property in $Value.PSObject.Properties) { $table[$property.Name] = ConvertTo-HybridmailArgument -Value $property.Value }
        return $table
    }
    if ($kind -ceq 'computername') { return $env:COMPUTERNAME }
    if ($kind -ceq 'days_ago') { return (Get-Date -ErrorAction Stop).AddDays(-[int]$given) }
    if ($kind -ceq 'bytes') { return ,[System.Convert]::FromBase64String([string]$given) }  # e.g. -FileData
    if ($kind -ceq 'secure_string') { return (ConvertTo-SecureString -String ([string]$given) -AsPlainText -Force -ErrorAction Stop) }
    throw ('unknown typed value ' + $kind)
}

function Import-HybridmailExchange {
    # Load the Exchange cmdlets as session.load says (auto: present, snapin, edge = the snap-ins of bin\exShell.psc1,
    # remote_exchange; as CSS-Exchange Shared/Confirm-ExchangeShell.ps1); returns how, or throws with what each step said.
    # Get-Command/Get-PSSnapin -ErrorAction Ignore are probes: "not there" is an answer, not an error.
    param([string]$LoadMode)
    if ($LoadMode -ceq 'auto' -and $null -ne (Get-Command -Name 'Get-ExchangeCertificate' -ErrorAction Ignore)) { return 'present' }
    $steps = @($LoadMode); if ($LoadMode -ceq 'auto') { $steps = @('snapin', 'edge', 'remote_exchange') }
    $problems = @()
    foreach ($step in $steps) {
        $errorCount = $Error.Count; $problem = 'the Exchange cmdlets are still missing'
        try {
            if ($step -ceq 'remote_exchange') {
                # [H14] Import-Module, not a dot-source in this scope; [H12] Exchange's scripts are not written for strict
                # mode or 'Stop'. Connect-ExchangeServer reports trouble through Write-Host and $Error: the probe judges.
                Set-StrictMode -Off -ErrorAction Stop
                $ErrorActionPreference = 'Continue'
                try {
                    Import-Module -Name (Join-Path -Path $env:ExchangeInstallPath -ChildPath 'bin\RemoteExchange.ps1' -ErrorAction Stop) -ErrorAction Stop
                    $null = Connect-ExchangeServer -Auto -ClientApplication:ManagementShell
                }
                finally { $ErrorActionPreference = 'Stop'; Set-StrictMode -Version 2 -ErrorAction Stop }
            }
            else {
                $names = @('Microsoft.Exchange.Management.PowerShell.SnapIn')
                if ($step -ceq 'edge') {
                    [xml]$console = Get-Content -LiteralPath (Join-Path -Path $env:ExchangeInstallPath -ChildPath 'bin\exShell.psc1' -ErrorAction Stop) -ErrorAction Stop
                    $names = @(foreach ($snapin in $console.PSConsoleFile.PSSnapIns.PSSnapIn) { $snapin.Name })
                }
                foreach ($name in @($names | Where-Object -ErrorAction Stop { $null -eq (Get-PSSnapin -Name $_ -ErrorAction Ignore) })) { Add-PSSnapin -Name $name -ErrorAction Stop }
            }
            if ($null -ne (Get-Command -Name 'Get-ExchangeCertificate' -ErrorAction Ignore)) { return $step }
        }
        catch { $problem = $_.Exception.Message }
        # [H16] Why Connect-ExchangeServer found no server is in $Error before its prompt's error: add those, oldest first.
        $earlier = @(foreach ($record in @($Error | Select-Object -First ([System.Math]::Max(0, $Error.Count - $errorCount)) -ErrorAction Stop)) {
                $text = [string](Read-HybridmailProperty -InputObject (Read-HybridmailProperty -InputObject $record -Name 'Exception' -Default $record) -Name 'Message' -Default $record)
                if ($text -and $text -ne $problem) { $text } })  # an ErrorRecord's exception's message, or an exception's
        $null = [System.Array]::Reverse($earlier)
        if ($earlier.Count -gt 0) { $problem += ' (after: ' + (@($earlier | Select-Object -Unique -ErrorAction Stop) -join ' | ') + ')' }
        $problems += ($step + ': ' + $problem)
    }
    throw ('cannot load the Exchange cmdlets (' + ($problems -join '; ') + ')')
}

function ConvertTo-HybridmailValue {
    # THE converter: any value -> null, string, bool, number or an array of those [H1]. Enum -> name [H3],
    # DateTime -> 'yyyy-MM-ddTHH:mm:ssZ' UTC [H4], byte[] -> base64 [H5], enumerables -> arrays, else ToString().
    param($Value, [int]$Depth = 0)
    if ($null -eq $Value) { return $null }
    if ($Value -is [System.Enum] -or $Value.PSObject.TypeNames -contains 'Deserialized.System.Enum') { return [string]$Value }
    $base = $Value.PSObject.BaseObject
    $utc = "yyyy-MM-dd'T'HH:mm:ss'Z'"
    if ($base -is [string] -or $base -is [bool]) { return $base }
    if ($base -is [System.DateTime]) { return $base.ToUniversalTime().ToString($utc, [System.Globalization.CultureInfo]::InvariantCulture) }
    if ($base -is [System.DateTimeOffset]) { return $base.UtcDateTime.ToString($utc, [System.Globalization.CultureInfo]::InvariantCulture) }
    if ($base -is [System.ValueType] -and $base -is [System.IConvertible] -and $base -isnot [char]) { return $base }  # numbers
    if ($base -is [byte[]]) { return [System.Convert]::ToBase64String($base) }
    if ($Depth -lt 4 -and $base -is [System.Collections.IEnumerable] -and $base -isnot [System.Collections.IDictionary]) {
        return ,@(foreach ($item in $base) { ,(ConvertTo-HybridmailValue -Value $item -Depth ($Depth + 1)) })  # [H2]
    }
    return [string]$Value
}

function Format-HybridmailRow {
    # The canonical row of an object over Names (tests/lab/wire.py canonical_rows): per converted value, null -> '',
    # bool -> 'true'/'false', number -> invariant digits, array -> items joined by LF; cells joined by U+001F.
    param($InputObject, [string[]]$Names)
    $cells = foreach ($name in $Names) {
        $value = ConvertTo-HybridmailValue -Value (Read-HybridmailProperty -InputObject $InputObject -Name $name)
        $texts = foreach ($item in @($value)) {
            if ($item -is [bool]) { $item.ToString().ToLowerInvariant() } else { [System.Convert]::ToString($item, [System.Globalization.CultureInfo]::InvariantCulture) }
        }
        [string]::Join("`n", [string[]]@($texts))
    }
    return [string]::Join([string][char]31, [string[]]@($cells))
}

function Test-HybridmailGuard {
    # Why on the server: a guard must stop the mutations of the SAME round trip when the server changed since the plan was
    # made, so it runs between the guard read and the first mutation. Generic: equal multisets of canonical rows, nothing else.
    param([object[]]$Objects, [object[]]$Expect)
    $names = [string[]]@(@(foreach ($row in $Expect) { foreach ($property in $row.PSObject.Properties) { $property.Name } }) | Select-Object -Unique -ErrorAction Stop)
    $actual = [string[]]@(foreach ($item in $Objects) { Format-HybridmailRow -InputObject $item -Names $names })
    $wanted = [string[]]@(foreach ($row in $Expect) { Format-HybridmailRow -InputObject $row -Names $names })
    $null = [System.Array]::Sort($actual, [System.StringComparer]::Ordinal)
    $null = [System.Array]::Sort($wanted, [System.StringComparer]::Ordinal)
    return ($actual.Count -eq $wanted.Count -and [string]::Join([string][char]30, $actual) -ceq [string]::Join([string][char]30, $wanted))
}

function Invoke-HybridmailCall {
    # Run one prepared call: {id, ok: true, objects[, guard_failed]} or {id, ok: false, error}.
    param($Call)
    $cmdletName = $Call.Cmdlet
    if ($AllowedCmdlets -cnotcontains $cmdletName) { throw ($cmdletName + ' is not allowed') }
    $splat = $Call.Arguments  # carries ErrorAction = 'Stop' [H6]
    try {
        $items = @(& $cmdletName @splat | Where-Object -ErrorAction Stop { $null -ne $_ })  # [H2] [H8]: nothing -> @()
        $objects = @(foreach ($item in $items) {
                if ($Call.Properties.Count -eq 0) { break }  # no properties asked: objects []
                $row = [ordered]@{}
                foreach ($name in $Call.Properties) { $row[$name] = ConvertTo-HybridmailValue -Value (Read-HybridmailProperty -InputObject $item -Name $name) }
                $row
            })
        $result = [ordered]@{ id = $Call.Id; ok = $true; objects = $objects }
        if ($null -ne $Call.Expect -and -not (Test-HybridmailGuard -Objects $items -Expect $Call.Expect)) { $result['guard_failed'] = $true }
        return $result
    }
    catch {
        # [H7] [H8] [H9] this call's error; a remote session's error names the server-side exception type
        $type = $_.Exception.GetType().FullName
        if ($_.Exception -is [System.Management.Automation.RemoteException] -and $null -ne $_.Exception.SerializedRemoteException) {
            $type = $_.Exception.SerializedRemoteException.PSObject.TypeNames[0] -replace '^Deserialized\.', '' }
        $details = [ordered]@{ type = $type; category = $_.CategoryInfo.Category.ToString(); message = $_.Exception.Message; fqid = $_.FullyQualifiedErrorId }
        return [ordered]@{ id = $Call.Id; ok = $false; error = $details }
    }
}

function ConvertFrom-HybridmailRequest {
    # 1. Decode and prepare every call: {Load, Calls}, or {Refused} when one call is not allowed (the whole request is
    #    refused before anything runs). A malformed request throws (BadRequest).
    param([string]$Encoded)
    $plan = ConvertFrom-Json -InputObject ([System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($Encoded))) -ErrorAction Stop
    if ($plan.version -isnot [int] -or $plan.version -ne $HybridmailWireVersion) { throw ('unsupported request version, this runner speaks ' + $HybridmailWireVersion) }
    if ($SessionLoads -cnotcontains $plan.session.load) { throw ('unknown session.load ' + $plan.session.load) }
    $calls = New-Object -TypeName 'System.Collections.Generic.List[object]' -ErrorAction Stop
    foreach ($call in @($plan.calls)) {
        $name = [string]$call.cmdlet
        $mutation = -not $name.StartsWith('Get-', [System.StringComparison]::Ordinal)
        $refused = $AllowedCmdlets -cnotcontains $name -or ($plan.read_only -ne $false -and $mutation)
        if ($refused) { return [pscustomobject]@{ Refused = ('call ' + $call.id + ': ' + $name + ' is not allowed in this request') } }
        $arguments = @{}
        foreach ($parameter in (Read-HybridmailProperty -InputObject $call -Name 'parameters' -Default ([pscustomobject]@{})).PSObject.Properties) {
            if ($parameter.Name -like '*Variable' -or $parameter.Name -eq 'OutBuffer') { throw ('parameter ' + $parameter.Name + ' is not allowed') }  # sets no variables
            $arguments[$parameter.Name] = ConvertTo-HybridmailArgument -Value $parameter.Value
        }
        $arguments['ErrorAction'] = 'Stop'  # whatever the request said [H6] [H13]
        $calls.Add([pscustomobject]@{ Id = [string]$call.id; Cmdlet = $name; Mutation = $mutation; Arguments = $arguments
                Properties = [string[]](Read-HybridmailProperty -InputObject $call -Name 'properties' -Default @()); Expect = (Read-HybridmailProperty -InputObject $call -Name 'expect') })
    }
    return [pscustomobject]@{ Refused = $null; Load = [string]$plan.session.load; Calls = $calls.ToArray() }
}

function Invoke-HybridmailRequest {
    # The answer to the whole request: {error} when nothing could run, else {calls}, one result per call.
    param([string]$Encoded, $Runner)
    try { $request = ConvertFrom-HybridmailRequest -Encoded $Encoded }
    catch { return [ordered]@{ error = [ordered]@{ type = 'BadRequest'; message = $_.Exception.Message } } }
    if ($null -ne $request.Refused) { return [ordered]@{ error = [ordered]@{ type = 'RequestRefused'; message = $request.Refused } } }
    # 2. The Exchange cmdlets, once, and only when a call needs them.
    $needsExchange = @($request.Calls | Where-Object -ErrorAction Stop { $SessionFreeCmdlets -cnotcontains $_.Cmdlet }).Count -gt 0
    if ($needsExchange -and $request.Load -cne 'none') {
        $loadClock = [System.Diagnostics.Stopwatch]::StartNew(); $loadFailure = $null
        try { $Runner['load'] = Import-HybridmailExchange -LoadMode $request.Load }
        catch { $loadFailure = $_.Exception.Message }
        $Runner['load_ms'] = [long]$loadClock.ElapsedMilliseconds
        if ($null -ne $loadFailure) { return [ordered]@{ error = [ordered]@{ type = 'SessionLoadFailed'; message = $loadFailure } } }
    }
    # 3. The calls in order. The first failed mutation or guard aborts the batch: later mutations are skipped, Get- calls still run.
    $results = New-Object -TypeName 'System.Collections.Generic.List[object]' -ErrorAction Stop
    $aborted = $false
    foreach ($call in $request.Calls) {
        if ($aborted -and $call.Mutation) { $results.Add([ordered]@{ id = $call.Id; ok = $false; skipped = $true }); continue }
        $result = Invoke-HybridmailCall -Call $call; $results.Add($result)
        if ((-not $result['ok'] -and ($call.Mutation -or $null -ne $call.Expect)) -or $result.Contains('guard_failed')) { $aborted = $true }
    }
    return [ordered]@{ calls = $results.ToArray() }
}

$HybridmailClock = [System.Diagnostics.Stopwatch]::StartNew()
$HybridmailRunner = [ordered]@{ powershell = $PSVersionTable.PSVersion.ToString(); load = 'none'; load_ms = 0; elapsed_ms = 0 }
try { $HybridmailAnswer = Invoke-HybridmailRequest -Encoded $HybridmailRequest -Runner $HybridmailRunner }
catch { $HybridmailAnswer = [ordered]@{ error = [ordered]@{ type = 'RunnerFailed'; message = $_.Exception.Message } } }  # a defect in this file

# 4. The one result line [H1] [H10] [H11]: every value is already a string, number, bool or array.
$HybridmailRunner['elapsed_ms'] = [long]$HybridmailClock.ElapsedMilliseconds
$HybridmailResponse = [ordered]@{ version = $HybridmailWireVersion; host = $env:COMPUTERNAME; runner = $HybridmailRunner; calls = @() }
if ($HybridmailAnswer.Contains('error')) { $HybridmailResponse['error'] = $HybridmailAnswer['error'] } else { $HybridmailResponse['calls'] = $HybridmailAnswer['calls'] }
$HybridmailJson = ConvertTo-Json -InputObject $HybridmailResponse -Depth 10 -Compress -ErrorAction Stop
$HybridmailPayload = [System.Convert]::ToBase64String([System.Text.Encoding]::UTF8.GetBytes($HybridmailJson))
Write-Output -InputObject ($HybridmailResultPrefix + $HybridmailPayload) -ErrorAction Stop
exit 0
